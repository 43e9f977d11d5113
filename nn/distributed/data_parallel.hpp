#pragma once
// DistributedDataParallel: being written (issue 23).
