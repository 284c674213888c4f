"""Small reusable console widgets."""
