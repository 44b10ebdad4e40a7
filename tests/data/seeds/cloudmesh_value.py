# From the seed cloudmesh-flow.rst ("Followup: We added a value to the return").
def a():
    x = 10
    return {"status": "done", 
            "color": "green", 
            "shape": "circle", 
            "label": "c", 
            "value": x}
