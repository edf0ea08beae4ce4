"""FastAPI binding for otpcore."""
