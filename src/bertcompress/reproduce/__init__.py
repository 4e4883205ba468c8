"""Rerun the survey's claims and judge them (`bertcompress reproduce`)."""
