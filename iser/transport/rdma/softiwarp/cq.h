// Completion queues and completion channels of the software iWARP device. A channel
// is an eventfd: readable while it holds events from armed CQs.
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_CQ_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_CQ_H_

#include <deque>

#include "iser/base/unique_fd.h"
#include "iser/transport/rdma/verbs.h"

namespace iser::softiwarp {

class SoftCq;

class SoftCompletionChannel final : public rdma::CompletionChannel {
 public:
  static absl::StatusOr<std::unique_ptr<SoftCompletionChannel>> Create();
  int fd() const override { return fd_.get(); }
  absl::StatusOr<rdma::CompletionQueue*> GetEvent() override;

  void Notify(SoftCq* cq);
  void Forget(SoftCq* cq);

 private:
  explicit SoftCompletionChannel(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  std::deque<SoftCq*> events_;
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
