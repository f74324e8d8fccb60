#include "node/exposure/exposure.h"

#include <cerrno>
#include <condition_variable>
#include <mutex>

namespace iser::node {

int StatusToErrno(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 0;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return EINVAL;
    case absl::StatusCode::kResourceExhausted:
      return ENOSPC;
    case absl::StatusCode::kUnimplemented:
      return EOPNOTSUPP;
    case absl::StatusCode::kPermissionDenied:
      return EPERM;
    default:
      return EIO;
  }
}

absl::Status WaitForCompletion(absl::AnyInvocable<void(IoCompletion)> start) {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    absl::Status status;
  };
  auto state = std::make_shared<State>();
  start([state](absl::Status s) {
    std::lock_guard<std::mutex> lock(state->mu);
    state->status = std::move(s);
    state->done = true;
    state->cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done; });
  return state->status;
}

}  // namespace iser::node
