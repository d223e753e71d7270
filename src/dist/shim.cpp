// The C boundary between `src/dist/group.rs` and libtorch's own distributed engine (c10d): a
// TCPStore rendezvous and a Gloo (CPU) process group, compiled against the torch wheel's headers
// and linked to its `libtorch_cpu.so`, which holds the implementation. The NCCL group is in
// `shim_nccl.cpp`, built only where the CUDA headers are.
//
// Every entry point catches every C++ exception and hands its message back through `err`
// (allocated with malloc, freed by `cdist_free_error`): nothing unwinds into Rust.

#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#ifdef COMPRESS_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#include "shim_common.hpp"

extern "C" {

void cdist_free_error(char* err) { std::free(err); }

int cdist_has_gloo(void) {
#ifdef COMPRESS_WITH_GLOO
  return 1;
#else
  return 0;
#endif
}

CdistStore* cdist_store_tcp(const char* host, uint16_t port, int world_size, int is_server,
                            const char* prefix, int64_t timeout_ms, char** err) {
  CdistStore* out = nullptr;
  cdist::guarded(err, [&] {
    c10d::TCPStoreOptions options;
    options.port = port;
    options.isServer = is_server != 0;
    options.numWorkers = static_cast<size_t>(world_size);
    // Rank 0 does not wait here for the others to connect: the process group's own rendezvous
    // does, under the same timeout, and names what it waited for.
    options.waitWorkers = false;
    options.timeout = std::chrono::milliseconds(timeout_ms);
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    }
    out = new CdistStore{store};
  });
  return out;
}

void cdist_store_free(CdistStore* store) { delete store; }

CdistGroup* cdist_group_gloo(CdistStore* store, int rank, int world_size, const char* interface,
                             int64_t timeout_ms, char** err) {
  CdistGroup* out = nullptr;
  cdist::guarded(err, [&] {
#ifdef COMPRESS_WITH_GLOO
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (interface != nullptr && interface[0] != '\0') {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store->store, rank, world_size,
                                                              options);
    out = new CdistGroup{backend, timeout, false};
#else
    (void)store;
    (void)rank;
    (void)world_size;
    (void)interface;
    (void)timeout_ms;
    throw std::runtime_error(
        "this build of compress has no Gloo process group (gloo's headers were missing when it "
        "was built; ./scripts/setup fetches them)");
#endif
  });
  return out;
}

void cdist_group_free(CdistGroup* group) { delete group; }

#ifndef COMPRESS_WITH_NCCL
int cdist_has_nccl(void) { return 0; }

CdistGroup* cdist_group_nccl(CdistStore*, int, int, int, int64_t, char** err) {
  *err = cdist::copy_message(
      "this build of compress has no NCCL process group (it was built without the CUDA headers)");
  return nullptr;
}
#endif

int cdist_allreduce_sum(CdistGroup* group, at::Tensor* const* tensors, size_t count, char** err) {
  return cdist::guarded(err, [&] {
    auto list = cdist::tensor_list(tensors, count);
    c10::intrusive_ptr<c10d::Work> work;
    if (list.size() == 1) {
      c10d::AllreduceOptions options;
      options.reduceOp = c10d::ReduceOp::SUM;
      options.timeout = group->timeout;
      work = group->backend->allreduce(list, options);
    } else {
      c10d::AllreduceCoalescedOptions options;
      options.reduceOp = c10d::ReduceOp::SUM;
      options.timeout = group->timeout;
      work = group->backend->allreduce_coalesced(list, options);
    }
    group->wait(work);
  });
}

int cdist_broadcast(CdistGroup* group, at::Tensor* tensor, int root, char** err) {
  return cdist::guarded(err, [&] {
    std::vector<at::Tensor> list{*tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.rootTensor = 0;
    options.timeout = group->timeout;
    group->wait(group->backend->broadcast(list, options));
  });
}

int cdist_barrier(CdistGroup* group, char** err) {
  return cdist::guarded(err, [&] {
    c10d::BarrierOptions options;
    options.timeout = group->timeout;
    group->wait(group->backend->barrier(options));
  });
}

}  // extern "C"
