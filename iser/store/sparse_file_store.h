// SparseFileStore: a BlockStore over one thinly provisioned regular file.
//
// Capacity comes from ftruncate (nothing is allocated up front); Unmap punches holes,
// GetLbaStatus reads them back through SEEK_DATA/SEEK_HOLE, Flush is fdatasync and a FUA
// write is a RWF_DSYNC write. The open file holds a flock (exclusive, or shared when
// read-only) so two target processes never serve the same file.
//
// Data calls on a thread running an EventLoop go through that thread's io_uring
// (UringRing) and complete later on the loop; with no loop, or without io_uring, they use
// synchronous syscalls and complete inline. Like every BlockStore the object is used from
// one thread at a time; in-flight operations keep the file open even if the store is
// destroyed first.
#ifndef ISER_STORE_SPARSE_FILE_STORE_H_
#define ISER_STORE_SPARSE_FILE_STORE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iser/store/block_store.h"
#include "iser/store/uring_file_op.h"

namespace iser::store {

class UringRing;

class SparseFileStore final : public BlockStore {
 public:
  struct Options {
    // Creates the file (if missing) or grows it to this size; never shrinks it on open
    // (use Resize). 0: use the existing file's size.
    uint64_t size_bytes = 0;
    uint32_t block_size = 512;  // 512 or 4096
    bool read_only = false;
    // false: always synchronous syscalls, even on an event loop (tests, benchmarks).
    bool use_io_uring = true;
    // On the io_uring path, first try a non-blocking preadv2/pwritev2 (RWF_NOWAIT) and
    // complete inline when the page cache satisfies it. false: every call goes through
    // the ring (tests that exercise the ring).
    bool nowait_fast_path = true;
  };

  // Errors: InvalidArgument (block size, unaligned or zero size, not a regular file),
  // NotFound (missing and no size given), PermissionDenied, FailedPrecondition (a
  // read-only file smaller than size_bytes), Unavailable (another process holds the lock).
  static absl::StatusOr<std::unique_ptr<SparseFileStore>> Open(absl::string_view path,
                                                               const Options& options);
  ~SparseFileStore() override = default;

  uint32_t block_size() const override { return block_size_; }
  uint64_t size_bytes() const override { return size_bytes_; }
  bool supports_unmap() const override { return supports_unmap_; }

  void Read(uint64_t offset, std::span<uint8_t> dst, IoCallback done) override;
  void Write(uint64_t offset, std::span<const uint8_t> src, bool fua, IoCallback done) override;
  void Flush(IoCallback done) override;
  void Unmap(uint64_t offset, uint64_t length, IoCallback done) override;
  void WriteZeroes(uint64_t offset, uint64_t length, bool deallocate, IoCallback done) override;

  absl::StatusOr<LbaRun> GetLbaStatus(uint64_t offset, uint64_t max_length) override;
  absl::Status Resize(uint64_t new_size_bytes) override;

  const std::string& path() const { return path_; }
  bool read_only() const { return read_only_; }
  // True when the calling thread's data calls go through io_uring.
  bool UsesIoUring() const { return Ring() != nullptr; }

 private:
  SparseFileStore(std::string path, SharedFd fd, const Options& options, uint64_t size,
                  bool supports_unmap);
  UringRing* Ring() const;
  absl::Status CheckRange(uint64_t offset, uint64_t length) const;
  absl::Status CheckWritable() const;
  // Punch hole (deallocate) or zero range, through io_uring or inline.
  void Fallocate(bool punch, uint64_t offset, uint64_t length, IoCallback done);
  // One non-blocking preadv2/pwritev2 (RWF_NOWAIT): the bytes it moved (0 if it would
  // have blocked, or on any error; the caller continues asynchronously).
  size_t TryNowait(bool write, uint64_t offset, uint8_t* data, size_t length, bool fua);

  const std::string path_;
  const SharedFd fd_;
  bool nowait_ok_;
  // The file lives in tmpfs: its reads and writes never wait for a device, so they run
  // inline (tmpfs refuses RWF_NOWAIT, which would send every I/O to io_uring workers).
  bool memory_backed_ = false;
  const uint32_t block_size_;
  const bool read_only_;
  const bool use_io_uring_;
  const bool supports_unmap_;
  uint64_t size_bytes_;
};

}  // namespace iser::store

#endif  // ISER_STORE_SPARSE_FILE_STORE_H_
