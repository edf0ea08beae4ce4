"""otpcore: passwordless e-mail OTP authentication, as a sans-IO core."""
