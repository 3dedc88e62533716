"""Training adapters: splits, rewards, rollouts, SVF / peft policies, checkpoints, the accelerate
loop, named recipes and the held-out comparison of the trained runs."""
