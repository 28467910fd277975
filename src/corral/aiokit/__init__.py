"""Small asyncio building blocks shared by the agent and the controllers (no corral imports)."""
