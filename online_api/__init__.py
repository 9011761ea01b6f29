"""FastAPI service: GET /users/{user_id}/churn-risk with features fetched from the online store."""
