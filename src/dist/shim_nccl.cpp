// The NCCL process group of the shim (see `shim.cpp`): compiled only where the CUDA headers are
// (the torch wheel's CUDA build, with the header wheels nvidia-cuda-crt and nvidia-cuda-cccl that
// scripts/setup installs), linked to the wheel's `libtorch_cuda.so`, which holds ProcessGroupNCCL.
//
// tch has no way to pick the current CUDA device, and NCCL binds each communicator to the device
// current when it is created: the group's constructor sets it to `cuda:device` first.

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "shim_common.hpp"

extern "C" {

int cdist_has_nccl(void) { return 1; }

CdistGroup* cdist_group_nccl(CdistStore* store, int rank, int world_size, int device,
                             int64_t timeout_ms, char** err) {
  CdistGroup* out = nullptr;
  cdist::guarded(err, [&] {
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store->store, rank, world_size,
                                                              options);
    out = new CdistGroup{backend, timeout, true};
  });
  return out;
}

}  // extern "C"
