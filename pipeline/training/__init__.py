"""Training (paper Sec. 4): the loop, checkpoints, sampler and DistributedDataParallel set-up."""
