// A BlockBackend wrapper for tests that completes every call later on its own EventLoop
// thread, as the initiator's LUN handle will.
#ifndef TESTS_NODE_ASYNC_BACKEND_H_
#define TESTS_NODE_ASYNC_BACKEND_H_

#include <atomic>
#include <memory>
#include <thread>

#include "iser/base/event_loop.h"
#include "node/exposure/block_backend.h"

namespace iser::node {

// Completes every call later, on its own EventLoop thread (as the initiator's LUN handle
// will), and can be told to fail reads.
class AsyncBackend : public BlockBackend {
 public:
  explicit AsyncBackend(BlockBackend& inner) : inner_(inner) {
    loop_ = std::move(*EventLoop::Create());
    thread_ = std::thread([this] { loop_->Run(); });
  }
  ~AsyncBackend() override {
    loop_->Stop();
    thread_.join();
  }
  uint64_t size_bytes() const override { return inner_.size_bytes(); }
  uint32_t block_size() const override { return inner_.block_size(); }
  void Read(uint64_t offset, std::span<uint8_t> dst, IoCompletion done) override {
    Submit([this, offset, dst, done = std::move(done)]() mutable {
      if (fail_reads) {
        done(absl::UnavailableError("injected"));
        return;
      }
      inner_.Read(offset, dst, std::move(done));
    });
  }
  void Write(uint64_t offset, std::span<const uint8_t> src, IoCompletion done) override {
    Submit([this, offset, src, done = std::move(done)]() mutable {
      inner_.Write(offset, src, std::move(done));
    });
  }
  void Flush(IoCompletion done) override {
    Submit([this, done = std::move(done)]() mutable { inner_.Flush(std::move(done)); });
  }
  void Discard(uint64_t offset, uint64_t length, IoCompletion done) override {
    Submit([this, offset, length, done = std::move(done)]() mutable {
      inner_.Discard(offset, length, std::move(done));
    });
  }

  std::atomic<bool> fail_reads{false};
  std::atomic<int> outstanding{0};
  std::atomic<int> max_outstanding{0};

 private:
  void Submit(absl::AnyInvocable<void()> op) {
    int now = outstanding.fetch_add(1) + 1;
    int seen = max_outstanding.load();
    while (now > seen && !max_outstanding.compare_exchange_weak(seen, now)) {
    }
    loop_->Post([this, op = std::move(op)]() mutable {
      outstanding.fetch_sub(1);
      op();
    });
  }

  BlockBackend& inner_;
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
};

}  // namespace iser::node

#endif  // TESTS_NODE_ASYNC_BACKEND_H_
