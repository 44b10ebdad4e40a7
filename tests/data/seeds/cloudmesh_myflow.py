# From the seed cloudmesh-flow.rst ("Infrastructure Workflow"), with the import line
# changed (cloudmesh.flow.WorkFlow -> cryoflow) and the `import time` it uses added.
import time
from cryoflow import BaseWorkFlow

class MyFlow(BaseWorkFlow):

    def a(self):
        print("in a!")
        time.sleep(5)

    def b(self):
        print("in b!")
        time.sleep(10)

    def c(self):
        print("in c!")
        time.sleep(10)
