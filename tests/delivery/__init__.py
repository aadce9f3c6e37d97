"""Tests of background delivery (client.background)."""
