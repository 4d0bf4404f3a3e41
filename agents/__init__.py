"""The learner process (rank 0): an asyncio agent that dispatches rollouts and runs the meta-update."""
