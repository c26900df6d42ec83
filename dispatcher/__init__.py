"""The dispatcher side: submit batches of tasks through Redis and await their results."""
