"""The worker side: an RQ worker that runs chunks of catalogue tasks and publishes their results."""
