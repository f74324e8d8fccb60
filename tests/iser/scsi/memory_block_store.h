// An in-memory BlockStore for the SCSI tests: blocks in a vector, a per-block "mapped"
// bit for thin provisioning, and an optional asynchronous mode where completions wait
// in a queue until RunPending() (to exercise the not-inline completion path).
#ifndef TESTS_ISER_SCSI_MEMORY_BLOCK_STORE_H_
#define TESTS_ISER_SCSI_MEMORY_BLOCK_STORE_H_

#include <cstring>
#include <deque>
#include <functional>
#include <vector>

#include "iser/store/block_store.h"

namespace iser::scsi::testing {

class MemoryBlockStore : public store::BlockStore {
 public:
  MemoryBlockStore(uint64_t size_bytes, uint32_t block_size = 512, bool thin = true)
      : bs_(block_size), thin_(thin), data_(size_bytes, 0), mapped_(size_bytes / block_size) {}

  uint32_t block_size() const override { return bs_; }
  uint64_t size_bytes() const override { return data_.size(); }
  bool supports_unmap() const override { return thin_; }

  void Read(uint64_t offset, std::span<uint8_t> dst, store::IoCallback done) override {
    ++reads;
    absl::Status s = Check(offset, dst.size());
    if (s.ok()) std::memcpy(dst.data(), data_.data() + offset, dst.size());
    Finish(std::move(done), s);
  }
  void Write(uint64_t offset, std::span<const uint8_t> src, bool fua,
             store::IoCallback done) override {
    ++writes;
    if (fua) ++fua_writes;
    absl::Status s = Check(offset, src.size());
    if (s.ok()) {
      std::memcpy(data_.data() + offset, src.data(), src.size());
      Map(offset, src.size(), true);
    }
    Finish(std::move(done), s);
  }
  void Flush(store::IoCallback done) override {
    ++flushes;
    Finish(std::move(done), absl::OkStatus());
  }
  void Unmap(uint64_t offset, uint64_t length, store::IoCallback done) override {
    ++unmaps;
    absl::Status s = Check(offset, length);
    if (s.ok()) {
      std::memset(data_.data() + offset, 0, length);
      Map(offset, length, false);
    }
    Finish(std::move(done), s);
  }
  void WriteZeroes(uint64_t offset, uint64_t length, bool deallocate,
                   store::IoCallback done) override {
    ++write_zeroes;
    absl::Status s = Check(offset, length);
    if (s.ok()) {
      std::memset(data_.data() + offset, 0, length);
      Map(offset, length, !(deallocate && thin_));
    }
    Finish(std::move(done), s);
  }
  absl::StatusOr<store::LbaRun> GetLbaStatus(uint64_t offset, uint64_t max_length) override {
    if (absl::Status s = Check(offset, bs_); !s.ok()) return s;
    uint64_t b = offset / bs_;
    bool m = mapped_[b];
    uint64_t n = 0;
    while (b + n < mapped_.size() && mapped_[b + n] == m && (n + 1) * bs_ <= max_length) ++n;
    if (n == 0) n = 1;
    return store::LbaRun{offset, n * bs_, m};
  }
  absl::Status Resize(uint64_t new_size_bytes) override {
    data_.resize(new_size_bytes, 0);
    mapped_.resize(new_size_bytes / bs_, false);
    return absl::OkStatus();
  }

  // Asynchronous mode: completions are queued until RunPending().
  void set_async(bool a) { async_ = a; }
  size_t RunPending() {
    size_t n = 0;
    while (!pending_.empty()) {
      auto f = std::move(pending_.front());
      pending_.pop_front();
      f();
      ++n;
    }
    return n;
  }
  void FailNext(absl::Status s) { fail_next_ = std::move(s); }

  std::vector<uint8_t>& data() { return data_; }
  bool mapped(uint64_t lba) const { return mapped_[lba]; }

  int reads = 0, writes = 0, fua_writes = 0, flushes = 0, unmaps = 0, write_zeroes = 0;

 private:
  absl::Status Check(uint64_t offset, uint64_t len) const {
    if (offset % bs_ || len % bs_) return absl::InvalidArgumentError("unaligned");
    if (offset > data_.size() || len > data_.size() - offset) {
      return absl::OutOfRangeError("beyond end");
    }
    return absl::OkStatus();
  }
  void Map(uint64_t offset, uint64_t len, bool m) {
    for (uint64_t b = offset / bs_; b < (offset + len) / bs_; ++b) mapped_[b] = m;
  }
  void Finish(store::IoCallback done, absl::Status s) {
    if (!fail_next_.ok()) {
      s = fail_next_;
      fail_next_ = absl::OkStatus();
    }
    if (!async_) {
      done(s);
      return;
    }
    auto shared = std::make_shared<store::IoCallback>(std::move(done));
    pending_.push_back([shared, s] { (*shared)(s); });
  }

  uint32_t bs_;
  bool thin_;
  std::vector<uint8_t> data_;
  std::vector<bool> mapped_;
  bool async_ = false;
  absl::Status fail_next_ = absl::OkStatus();
  std::deque<std::function<void()>> pending_;
};

}  // namespace iser::scsi::testing

#endif  // TESTS_ISER_SCSI_MEMORY_BLOCK_STORE_H_
