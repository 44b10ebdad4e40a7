# From the seed colonyos-workflows.md ("Passing data between processes"): the executor
# loop of wf_executor.py, verbatim. It is a method; the test gives it a class.
def start(self):
       while (True):
           try:
               process = self.colonies.assign(self.colonyname, 10, self.executor_prvkey)

               if process.spec.funcname == "gen":
                   rand_num = [random.randint(1, 100) for i in range(5)]
                   self.colonies.close(process.processid, rand_num, self.executor_prvkey)
               elif process.spec.funcname == "sum":
                   total = sum(process.input)
                   self.colonies.close(process.processid, [total], self.executor_prvkey)
               else:
                   self.colonies.fail(process.processid, ["Unknown function"], self.executor_prvkey)
           except Exception as err:
               print(err)
               pass
