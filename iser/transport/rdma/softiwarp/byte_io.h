// Byte sources and sinks the FPDU engines read from and write to: a non-blocking
// socket in production, memory in tests and the fuzzer.
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_BYTE_IO_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_BYTE_IO_H_

#include <sys/types.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

namespace iser::softiwarp {

// readv/writev results: > 0 bytes moved, 0 end of stream (read only), < 0 -errno
// (-EAGAIN when the call would block).
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual ssize_t Readv(const iovec* iov, int iovcnt) = 0;
  // How many bytes past what a Readv asks for the source may read ahead (a hint; a
  // source without a read-ahead buffer ignores it).
  virtual void SetReadAhead(size_t bytes) {}
};

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual ssize_t Writev(const iovec* iov, int iovcnt) = 0;
};

class FdByteIo : public ByteSource, public ByteSink {
 public:
  explicit FdByteIo(int fd) : fd_(fd) {}
  ssize_t Readv(const iovec* iov, int iovcnt) override;
  ssize_t Writev(const iovec* iov, int iovcnt) override;

 private:
  int fd_;
};

// A socket read through a staging buffer: a stream of small FPDUs costs one read per
// batch instead of one per header, payload and trailer. A read of at least
// `direct_threshold` bytes with nothing staged goes straight into the caller's iovecs
// (tagged payload lands in its registered region, no copy), with the staging buffer as
// one more iovec so the next header comes in the same call. Staging reads are capped at
// the read-ahead (SetReadAhead, at most `stage_bytes`, initially `initial_read_ahead`):
// the receiver keeps it small while FPDUs are large, so a large payload behind a header
// is mostly read directly, not copied, and raises it while FPDUs are small, so a stream
// of 4 KiB FPDUs costs one syscall per many FPDUs (each payload then copied once from
// the staging buffer, counted in staged_bytes()).
// After a short read (less than asked for: the socket was empty), the next call returns
// -EAGAIN without a syscall; the caller must be woken by level-triggered readiness.
class StagedFdSource : public ByteSource {
 public:
  explicit StagedFdSource(int fd, size_t stage_bytes = 64 << 10, size_t initial_read_ahead = 4096,
                          size_t direct_threshold = 2048)
      : fd_(fd),
        buf_(stage_bytes),
        read_ahead_(std::min(initial_read_ahead, stage_bytes)),
        direct_threshold_(direct_threshold) {}
  ssize_t Readv(const iovec* iov, int iovcnt) override;
  void SetReadAhead(size_t bytes) override;
  size_t read_ahead() const { return read_ahead_; }
  size_t staged() const { return end_ - begin_; }
  uint64_t syscalls() const { return syscalls_; }
  uint64_t staged_bytes() const { return staged_bytes_; }  // copied once in user space

 private:
  size_t CopyOut(const iovec* iov, int iovcnt);
  int fd_;
  std::vector<uint8_t> buf_;
  size_t read_ahead_;
  size_t direct_threshold_;
  size_t begin_ = 0, end_ = 0;
  bool drained_ = false;  // the last read returned less than asked for
  uint64_t syscalls_ = 0;
  uint64_t staged_bytes_ = 0;
};

// Serves `data` in chunks of at most `chunk` bytes per call, then -EAGAIN (or 0 at
// the end if `eof`).
class MemoryByteSource : public ByteSource {
 public:
  MemoryByteSource(std::span<const uint8_t> data, size_t chunk, bool eof = false)
      : data_(data), chunk_(chunk == 0 ? 1 : chunk), eof_(eof) {}
  ssize_t Readv(const iovec* iov, int iovcnt) override;
  size_t consumed() const { return pos_; }
  void Extend(std::span<const uint8_t> data) { data_ = data; }

 private:
  std::span<const uint8_t> data_;
  size_t chunk_;
  bool eof_;
  size_t pos_ = 0;
};

// Appends everything written (up to `limit` bytes per call) to a vector.
class MemoryByteSink : public ByteSink {
 public:
  explicit MemoryByteSink(size_t limit = SIZE_MAX) : limit_(limit) {}
  ssize_t Writev(const iovec* iov, int iovcnt) override;
  std::vector<uint8_t>& data() { return data_; }

 private:
  size_t limit_;
  std::vector<uint8_t> data_;
};

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_BYTE_IO_H_
