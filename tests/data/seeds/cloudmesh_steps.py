# The function f of the seed's YAML task (cloudmesh-flow.rst), and g for a second task.
def f(x, y):
    return x * y


def g(a, scale):
    return {"scaled": a * scale}
