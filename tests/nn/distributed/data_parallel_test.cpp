// DistributedDataParallel's tests: being written (issue 23).
