// File operations for UringRing: read, write, fdatasync, fallocate (punch hole / zero
// range). Each op resubmits the rest of a short transfer, reads zeroes past end of file,
// and falls back to writing zeroes where the file system cannot fallocate.
#ifndef ISER_STORE_URING_FILE_OP_H_
#define ISER_STORE_URING_FILE_OP_H_

#include <cstdint>
#include <memory>

#include "iser/base/unique_fd.h"
#include "iser/store/block_store.h"
#include "iser/store/uring_ring.h"

namespace iser::store {

// Shared by the store and its in-flight ops, so an op never outlives its descriptor.
using SharedFd = std::shared_ptr<const UniqueFd>;

class UringFileOp final : public UringRing::Op {
 public:
  static std::unique_ptr<UringFileOp> Read(SharedFd fd, uint64_t offset, uint8_t* dst,
                                           uint64_t length, IoCallback done);
  static std::unique_ptr<UringFileOp> Write(SharedFd fd, uint64_t offset, const uint8_t* src,
                                            uint64_t length, bool dsync, IoCallback done);
  static std::unique_ptr<UringFileOp> DataSync(SharedFd fd, IoCallback done);
  // mode: FALLOC_FL_PUNCH_HOLE or FALLOC_FL_ZERO_RANGE (FALLOC_FL_KEEP_SIZE is added).
  static std::unique_ptr<UringFileOp> Fallocate(SharedFd fd, int mode, uint64_t offset,
                                                uint64_t length, IoCallback done);

  void Prepare(io_uring_sqe* sqe) override;
  bool Complete(int32_t res) override;

 private:
  enum class Kind { kRead, kWrite, kWriteZeroes, kDataSync, kFallocate };

  UringFileOp(Kind kind, SharedFd fd, uint64_t offset, uint8_t* buf, uint64_t length,
              IoCallback done);
  bool Finish(absl::Status status);

  Kind kind_;
  SharedFd fd_;
  uint64_t offset_;
  uint8_t* buf_;
  uint64_t length_;
  uint64_t done_bytes_ = 0;
  uint32_t in_sqe_ = 0;  // bytes asked for in the current SQE (write zeroes chunking)
  bool dsync_ = false;
  int fallocate_mode_ = 0;
  IoCallback done_;
};

}  // namespace iser::store

#endif  // ISER_STORE_URING_FILE_OP_H_
