// Completion queues and completion channels of the software iWARP device. A channel
// is an eventfd: readable while it holds events from armed CQs.
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_CQ_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_CQ_H_

#include <deque>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "iser/base/event_loop.h"
#include "iser/base/unique_fd.h"
#include "iser/transport/rdma/verbs.h"

namespace iser::softiwarp {

class SoftCq;

class SoftCompletionChannel final : public rdma::CompletionChannel {
 public:
  // `loop` is the device's loop, where every completion of its CQs is produced.
  static absl::StatusOr<std::unique_ptr<SoftCompletionChannel>> Create(EventLoop* loop);
  ~SoftCompletionChannel() override { *alive_ = false; }
  int fd() const override { return fd_.get(); }
  absl::StatusOr<rdma::CompletionQueue*> GetEvent() override;
  // On the device's loop the watcher is called after the batch of work that produced
  // the event (EventLoop::Defer): no eventfd write, epoll wakeup and read per event,
  // which were three syscalls per completion batch. Another loop watches the fd.
  absl::Status Watch(EventLoop* loop, absl::AnyInvocable<void()> on_event) override;
  void Unwatch(EventLoop* loop) override;

  void Notify(SoftCq* cq);
  void Forget(SoftCq* cq);

 private:
  SoftCompletionChannel(EventLoop* loop, UniqueFd fd) : loop_(loop), fd_(std::move(fd)) {}
  void Signal();
  void ClearSignal();

  EventLoop* loop_;
  UniqueFd fd_;
  std::deque<SoftCq*> events_;
  bool fd_signaled_ = false;  // the eventfd holds a count
  // Shared so that a call in progress survives Unwatch from inside it.
  std::shared_ptr<absl::AnyInvocable<void()>> in_loop_watcher_;
  bool dispatch_deferred_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for deferred dispatch
};

class SoftCq final : public rdma::CompletionQueue {
 public:
  SoftCq(int cqe, void* context, SoftCompletionChannel* channel)
      : cqe_(cqe), context_(context), channel_(channel) {}
  ~SoftCq() override;
  int Poll(std::span<rdma::WorkCompletion> out) override;
  absl::Status RequestNotify(bool solicited_only) override;
  void* context() const override { return context_; }

  void Push(const rdma::WorkCompletion& wc, bool solicited);
  size_t pending() const { return queue_.size(); }
  bool overflowed() const { return overflowed_; }

 private:
  int cqe_;
  void* context_;
  SoftCompletionChannel* channel_;
  std::deque<rdma::WorkCompletion> queue_;
  bool armed_ = false;
  bool solicited_only_ = false;
  bool overflowed_ = false;
};

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_CQ_H_
