"""FastAPI model server: ``uvicorn api.app:create_app --factory``."""
