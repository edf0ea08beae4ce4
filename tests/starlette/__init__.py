"""The Starlette example: the whole flow on otpcore alone, over real HTTP."""
