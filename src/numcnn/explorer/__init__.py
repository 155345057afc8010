"""The explorer page: ``numcnn explore`` serves a page where one draws a digit and watches the
forward pass, the sensitivity maps δ of the backward pass, the kernel gradients and one SGD step.

The web framework (FastAPI + uvicorn, the ``numcnn[explore]`` extra) is imported only by
:mod:`numcnn.explorer.app`; :mod:`numcnn.explorer.service` holds everything else (request
validation, the trace as JSON, the SGD step on a copy of the model) with NumPy alone.
"""
