#include "node/exposure/memory_block_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"

namespace iser::node {

absl::StatusOr<std::unique_ptr<MemoryBlockBackend>> MemoryBlockBackend::Create(
    uint64_t size_bytes, uint32_t block_size) {
  if (block_size < 512 || (block_size & (block_size - 1)) != 0 || block_size > 65536) {
    return absl::InvalidArgumentError(absl::StrFormat("bad block size %u", block_size));
  }
  if (size_bytes == 0 || size_bytes % block_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("size %u is not a positive multiple of %u", size_bytes, block_size));
  }
  void* p = ::mmap(nullptr, size_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("mmap %u bytes: %s", size_bytes, std::strerror(errno)));
  }
  return std::unique_ptr<MemoryBlockBackend>(
      new MemoryBlockBackend(static_cast<uint8_t*>(p), size_bytes, block_size));
}

MemoryBlockBackend::~MemoryBlockBackend() { ::munmap(data_, size_); }

bool MemoryBlockBackend::InRange(uint64_t offset, uint64_t length) const {
  return offset <= size_ && length <= size_ - offset;
}

void MemoryBlockBackend::Enter() {
  uint64_t now = in_flight_.fetch_add(1) + 1;
  uint64_t seen = max_concurrency_.load(std::memory_order_relaxed);
  while (now > seen && !max_concurrency_.compare_exchange_weak(seen, now)) {
  }
}

void MemoryBlockBackend::Read(uint64_t offset, std::span<uint8_t> dst, IoCompletion done) {
  if (!InRange(offset, dst.size())) {
    done(absl::OutOfRangeError("read beyond capacity"));
    return;
  }
  Enter();
  reads_.fetch_add(1, std::memory_order_relaxed);
  std::memcpy(dst.data(), data_ + offset, dst.size());
  Leave();
  done(absl::OkStatus());
}

void MemoryBlockBackend::Write(uint64_t offset, std::span<const uint8_t> src, IoCompletion done) {
  if (!InRange(offset, src.size())) {
    done(absl::OutOfRangeError("write beyond capacity"));
    return;
  }
  Enter();
  writes_.fetch_add(1, std::memory_order_relaxed);
  std::memcpy(data_ + offset, src.data(), src.size());
  Leave();
  done(absl::OkStatus());
}

void MemoryBlockBackend::Flush(IoCompletion done) {
  flushes_.fetch_add(1, std::memory_order_relaxed);
  done(absl::OkStatus());
}

void MemoryBlockBackend::Discard(uint64_t offset, uint64_t length, IoCompletion done) {
  if (!InRange(offset, length)) {
    done(absl::OutOfRangeError("discard beyond capacity"));
    return;
  }
  discards_.fetch_add(1, std::memory_order_relaxed);
  discarded_bytes_.fetch_add(length, std::memory_order_relaxed);
  // Whole pages go back to the kernel (and read as zeroes); the edges are zeroed.
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t begin = offset, end = offset + length;
  uint64_t pbegin = (begin + page - 1) / page * page, pend = end / page * page;
  if (pbegin < pend) {
    std::memset(data_ + begin, 0, pbegin - begin);
    ::madvise(data_ + pbegin, pend - pbegin, MADV_DONTNEED);
    std::memset(data_ + pend, 0, end - pend);
  } else {
    std::memset(data_ + begin, 0, length);
  }
  done(absl::OkStatus());
}

}  // namespace iser::node
