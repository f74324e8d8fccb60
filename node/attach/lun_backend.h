// node_attach: the glue between the in-process initiator and the exposure seam.
//
// LunBackend is a node::BlockBackend over an initiator::LunHandle. The handle lives on
// an EventLoop thread (its session's); every call hops there and the completion runs on
// that thread (which the exposures allow: they never block inside a completion).
// Reads and writes from many threads are queued here and handed over in batches: one
// Post() (a lock and an eventfd write that wakes the loop) per batch, not per I/O.
//
//   auto init = initiator::SyncInitiator::Connect(config);
//   auto lun = (*init)->OpenLun(0);
//   auto backend = LunBackend::Create((*init)->loop(), *lun);
//   auto dev = FuseLoopExposure().Expose(**backend, {.name = "pvc-1"});
#ifndef NODE_ATTACH_LUN_BACKEND_H_
#define NODE_ATTACH_LUN_BACKEND_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "iser/base/event_loop.h"
#include "iser/initiator/lun_handle.h"
#include "node/exposure/block_backend.h"

namespace iser::node {

class LunBackend : public BlockBackend {
 public:
  // Must not be called on `loop`'s thread (it waits for a READ CAPACITY(16) there to
  // learn LBPRZ). `lun` must outlive the backend and every I/O issued through it.
  static absl::StatusOr<std::unique_ptr<LunBackend>> Create(EventLoop* loop,
                                                            initiator::LunHandle* lun);

  uint64_t size_bytes() const override { return size_bytes_; }
  uint32_t block_size() const override { return block_size_; }
  bool discard_zeroes() const override { return lbprz_; }

  void Read(uint64_t offset, std::span<uint8_t> dst, IoCompletion done) override;
  void Write(uint64_t offset, std::span<const uint8_t> src, IoCompletion done) override;
  void Flush(IoCompletion done) override;
  void Discard(uint64_t offset, uint64_t length, IoCompletion done) override;

  bool thin_provisioned() const { return thin_; }
  uint64_t ios() const { return ios_.load(std::memory_order_relaxed); }

 private:
  struct Op {
    bool write;
    uint64_t offset;
    uint8_t* data;
    size_t length;
    IoCompletion done;
  };

  LunBackend(EventLoop* loop, initiator::LunHandle* lun);
  void Enqueue(Op op);
  void Drain();  // loop thread

  EventLoop* loop_;
  initiator::LunHandle* lun_;
  uint64_t size_bytes_;
  uint32_t block_size_;
  bool thin_;
  bool lbprz_ = false;
  std::atomic<uint64_t> ios_{0};

  std::mutex mu_;
  std::vector<Op> pending_;    // guarded by mu_
  bool drain_posted_ = false;  // guarded by mu_: a Drain() is queued on the loop
  std::vector<Op> draining_;   // loop thread only; kept to reuse its capacity
};

}  // namespace iser::node

#endif  // NODE_ATTACH_LUN_BACKEND_H_
