"""The benchmark harness: W1-W4 against this system, plain RQ, huey and ProcessPoolExecutor."""
