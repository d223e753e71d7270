// What the two translation units of the shim share: the handles behind the opaque pointers Rust
// holds, and the guard that turns C++ exceptions into error text.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

struct CdistStore {
  c10::intrusive_ptr<c10d::Store> store;
};

struct CdistGroup {
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  // NCCL: a collective is queued on the device, and waiting for it only orders the current
  // stream after it (a wait with a timeout would block the host until it ends); the backend's
  // own watchdog enforces the timeout. Gloo: the host waits, under the timeout.
  bool queued_on_device;

  void wait(const c10::intrusive_ptr<c10d::Work>& work) const {
    if (queued_on_device) {
      work->wait();
    } else {
      work->wait(timeout);
    }
  }
};

namespace cdist {

inline char* copy_message(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, text.c_str(), text.size() + 1);
  }
  return out;
}

// Runs `body`, turning any exception into an error message; 0 on success, -1 on failure.
template <typename F>
int guarded(char** err, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    *err = copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message("unknown C++ exception");
  }
  return -1;
}

inline std::vector<at::Tensor> tensor_list(at::Tensor* const* tensors, size_t count) {
  std::vector<at::Tensor> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    out.push_back(*tensors[i]);
  }
  return out;
}

}  // namespace cdist
