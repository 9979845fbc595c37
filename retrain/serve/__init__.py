"""`retrain serve`: a SavedModel base path behind TensorFlow Serving's REST API, plus a drop-an-image page.

rest.py is the JSON codec (TF Serving's json_tensor.cc rules), store.py the versions on disk and their
loaded signatures, batcher.py the calls that gather concurrent requests into one, app.py the HTTP
routes, page.py the page at `/`, server.py the process (bind, print the URL, stop on Ctrl-C).
"""
