"""The audit log (``audit.record``): who did what to which slice or host, when, from where."""
