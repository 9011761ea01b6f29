"""The baseline of ``api_load.py``: FastAPI answering a constant JSON on the same route.

What no amount of work on the scoring path can beat on this machine: the framework,
the server and the load generator alone.
"""

from fastapi import FastAPI

app = FastAPI()


@app.get("/users/{user_id}/churn-risk")
async def churn_risk(user_id: str) -> dict[str, object]:
    return {"user_id": user_id, "churn_risk": 0.1, "risk_band": "low"}
