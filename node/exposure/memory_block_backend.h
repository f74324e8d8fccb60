// A BlockBackend in anonymous memory (sparse: MAP_NORESERVE, discard gives pages back).
// Completes every call inline. For tests, benchmarks and `expose-memory`.
#ifndef NODE_EXPOSURE_MEMORY_BLOCK_BACKEND_H_
#define NODE_EXPOSURE_MEMORY_BLOCK_BACKEND_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "node/exposure/block_backend.h"

namespace iser::node {

class MemoryBlockBackend : public BlockBackend {
 public:
  static absl::StatusOr<std::unique_ptr<MemoryBlockBackend>> Create(uint64_t size_bytes,
                                                                    uint32_t block_size);
  ~MemoryBlockBackend() override;
  MemoryBlockBackend(const MemoryBlockBackend&) = delete;
  MemoryBlockBackend& operator=(const MemoryBlockBackend&) = delete;

  uint64_t size_bytes() const override { return size_; }
  uint32_t block_size() const override { return block_size_; }
  void Read(uint64_t offset, std::span<uint8_t> dst, IoCompletion done) override;
  void Write(uint64_t offset, std::span<const uint8_t> src, IoCompletion done) override;
  void Flush(IoCompletion done) override;
  void Discard(uint64_t offset, uint64_t length, IoCompletion done) override;
  bool discard_zeroes() const override { return true; }

  // Direct view of the contents (tests compare against it).
  const uint8_t* data() const { return data_; }

  // Counters for tests.
  uint64_t reads() const { return reads_.load(); }
  uint64_t writes() const { return writes_.load(); }
  uint64_t flushes() const { return flushes_.load(); }
  uint64_t discards() const { return discards_.load(); }
  uint64_t discarded_bytes() const { return discarded_bytes_.load(); }
  // Highest number of calls seen in flight at once (always 1 for inline completion, so
  // this counts concurrent callers: the queue depth that reached the backend).
  uint64_t max_concurrency() const { return max_concurrency_.load(); }

 private:
  MemoryBlockBackend(uint8_t* data, uint64_t size, uint32_t block_size)
      : data_(data), size_(size), block_size_(block_size) {}
  bool InRange(uint64_t offset, uint64_t length) const;
  void Enter();
  void Leave() { in_flight_.fetch_sub(1); }

  uint8_t* data_;
  uint64_t size_;
  uint32_t block_size_;
  std::atomic<uint64_t> reads_{0}, writes_{0}, flushes_{0}, discards_{0}, discarded_bytes_{0};
  std::atomic<uint64_t> in_flight_{0}, max_concurrency_{0};
};

}  // namespace iser::node

#endif  // NODE_EXPOSURE_MEMORY_BLOCK_BACKEND_H_
