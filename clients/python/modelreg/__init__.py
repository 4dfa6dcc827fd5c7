"""A client for the modelreg HTTP API, for training jobs and deployers who live in Python.

Only Python's standard library is used, so it installs anywhere a training job runs:

    from modelreg import Client
    reg = Client("http://127.0.0.1:8080", token=os.environ["MODELREG_TOKEN"])
    v = reg.register("fraud", directory="out/", metrics={"accuracy": 0.95})
    reg.wait("fraud", v["version"], until={"PendingApproval"})
    for prod in reg.watch_production("fraud"):
        deploy(prod)

Every error the API answers is raised as ApiError with its stable code.
"""

from .client import ApiError, Client, DigestMismatch

__all__ = ["ApiError", "Client", "DigestMismatch"]
__version__ = "1.0.0"
