"""The tail layer: following paths on disk and handing out their lines as raw bytes.

It owns file identity, draining after rotation, truncation, deletion, partial and over-long lines
(`filestream`), the state file of read positions (`checkpoint`) and when the loop wakes up
(`waker`). It knows nothing of formats or metrics, and imports only the stdlib and watchdog.
"""
