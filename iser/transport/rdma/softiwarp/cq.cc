#include "iser/transport/rdma/softiwarp/cq.h"

#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "iser/base/logging.h"

namespace iser::softiwarp {

absl::StatusOr<std::unique_ptr<SoftCompletionChannel>> SoftCompletionChannel::Create(
    EventLoop* loop) {
  UniqueFd fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!fd) return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  return std::unique_ptr<SoftCompletionChannel>(new SoftCompletionChannel(loop, std::move(fd)));
}

absl::StatusOr<rdma::CompletionQueue*> SoftCompletionChannel::GetEvent() {
  if (events_.empty()) {
    ClearSignal();
    return absl::UnavailableError("no CQ event");
  }
  SoftCq* cq = events_.front();
  events_.pop_front();
  if (events_.empty()) ClearSignal();
  return cq;
}

absl::Status SoftCompletionChannel::Watch(EventLoop* loop, absl::AnyInvocable<void()> on_event) {
  if (loop != loop_ || loop_ == nullptr) return CompletionChannel::Watch(loop, std::move(on_event));
  if (in_loop_watcher_) return absl::FailedPreconditionError("completion channel already watched");
  in_loop_watcher_ = std::make_shared<absl::AnyInvocable<void()>>(std::move(on_event));
  ClearSignal();  // from here on events reach the watcher, not the fd
  if (!events_.empty()) Signal();
  return absl::OkStatus();
}

void SoftCompletionChannel::Unwatch(EventLoop* loop) {
  if (loop != loop_ || !in_loop_watcher_) return CompletionChannel::Unwatch(loop);
  in_loop_watcher_ = nullptr;
}

void SoftCompletionChannel::Notify(SoftCq* cq) {
  events_.push_back(cq);
  Signal();
}

void SoftCompletionChannel::Signal() {
  if (!in_loop_watcher_) {
    if (fd_signaled_) return;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof(one));
    fd_signaled_ = true;
    return;
  }
  if (dispatch_deferred_) return;
  dispatch_deferred_ = true;
  loop_->Defer([this, alive = alive_] {
    if (!*alive) return;
    dispatch_deferred_ = false;
    if (events_.empty() || !in_loop_watcher_) return;
    // The watcher may unwatch, and destroy this channel, from inside the call.
    std::shared_ptr<absl::AnyInvocable<void()>> watcher = in_loop_watcher_;
    (*watcher)();
  });
}

void SoftCompletionChannel::ClearSignal() {
  if (!fd_signaled_) return;
  uint64_t v;
  [[maybe_unused]] ssize_t n = ::read(fd_.get(), &v, sizeof(v));
  fd_signaled_ = false;
}

void SoftCompletionChannel::Forget(SoftCq* cq) {
  std::erase(events_, cq);
  if (events_.empty()) ClearSignal();
}

SoftCq::~SoftCq() {
  if (channel_ != nullptr) channel_->Forget(this);
}

int SoftCq::Poll(std::span<rdma::WorkCompletion> out) {
  size_t n = std::min(out.size(), queue_.size());
  for (size_t i = 0; i < n; ++i) {
    out[i] = queue_.front();
    queue_.pop_front();
  }
  return static_cast<int>(n);
}

absl::Status SoftCq::RequestNotify(bool solicited_only) {
  if (channel_ == nullptr) return absl::FailedPreconditionError("CQ has no channel");
  armed_ = true;
  solicited_only_ = solicited_only;
  return absl::OkStatus();
}

void SoftCq::Push(const rdma::WorkCompletion& wc, bool solicited) {
  if (queue_.size() >= static_cast<size_t>(cqe_) && !overflowed_) {
    overflowed_ = true;  // verbs would raise IBV_EVENT_CQ_ERR; we keep the entry
    ISER_LOG(kWarning, "softiwarp: CQ overrun (%d entries)", cqe_);
  }
  queue_.push_back(wc);
  if (armed_ && (!solicited_only_ || solicited || wc.status != rdma::WcStatus::kSuccess)) {
    armed_ = false;
    channel_->Notify(this);
  }
}

}  // namespace iser::softiwarp
