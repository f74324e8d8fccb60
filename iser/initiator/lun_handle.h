// A LUN of a logged-in session as a block device: asynchronous read / write / flush /
// unmap and its capacity. What the exposure backends (fuse_loop, nbd) build on.
//
// Unit attentions are retried transparently (a reinstated session reports a reset on
// its first command); CAPACITY DATA HAS CHANGED (as a unit attention or an Async
// message) re-reads the capacity. SCSI errors map to absl codes: kNotFound (no such
// LUN), kInvalidArgument / kOutOfRange (bad request), kDataLoss (medium error),
// kPermissionDenied (write protected), kUnavailable (I/O error: connection gone),
// kInternal (other sense).
//
// Loop thread only; completions run on the session's loop thread. The handle (and each
// buffer) must outlive the I/Os issued on it.
#ifndef ISER_INITIATOR_LUN_HANDLE_H_
#define ISER_INITIATOR_LUN_HANDLE_H_

#include <cstdint>
#include <memory>
#include <span>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iser/initiator/session.h"

namespace iser::initiator {

using IoCallback = absl::AnyInvocable<void(absl::Status)>;

// Maps a SCSI outcome to a status (OK for GOOD).
absl::Status ScsiStatusToStatus(const ScsiResult& result, uint64_t lun);

class LunHandle {
 public:
  // TEST UNIT READY (clearing unit attentions), then READ CAPACITY(16).
  static void Attach(Session* session, uint64_t lun,
                     absl::AnyInvocable<void(absl::StatusOr<std::unique_ptr<LunHandle>>)> done);
  ~LunHandle();
  LunHandle(const LunHandle&) = delete;
  LunHandle& operator=(const LunHandle&) = delete;

  // `buffer.size()` must be a multiple of block_size(). Large transfers are split.
  void Read(uint64_t lba, std::span<uint8_t> buffer, IoCallback done);
  void Write(uint64_t lba, std::span<const uint8_t> data, IoCallback done);
  // Byte-addressed forms (offset and length multiples of block_size()).
  void ReadAt(uint64_t offset, std::span<uint8_t> buffer, IoCallback done);
  void WriteAt(uint64_t offset, std::span<const uint8_t> data, IoCallback done);
  void Flush(IoCallback done);  // SYNCHRONIZE CACHE
  void Unmap(uint64_t lba, uint64_t blocks, IoCallback done);
  void RefreshCapacity(IoCallback done);

  uint64_t lun() const { return lun_; }
  uint32_t block_size() const { return block_size_; }
  uint64_t num_blocks() const { return num_blocks_; }
  uint64_t capacity_bytes() const { return num_blocks_ * block_size_; }
  bool thin_provisioned() const { return thin_; }
  uint64_t capacity_changes() const { return capacity_changes_; }
  Session* session() const { return session_; }

  // Largest transfer per SCSI command.
  void set_max_transfer_bytes(uint32_t bytes) { max_transfer_bytes_ = bytes; }

 private:
  LunHandle(Session* session, uint64_t lun);
  void ReadWrite(bool write, uint64_t lba, uint8_t* data, size_t length, IoCallback done);
  // Runs a command, retrying unit attentions / busy; `check_underflow` fails short data.
  void Execute(ScsiCommand command, bool check_underflow, IoCallback done, int retries = 8);
  void OnSense(std::span<const uint8_t> sense);

  Session* session_;
  uint64_t lun_;
  uint32_t block_size_ = 512;
  uint64_t num_blocks_ = 0;
  bool thin_ = false;
  uint64_t capacity_changes_ = 0;
  uint32_t max_transfer_bytes_ = 4 << 20;
  std::shared_ptr<int> life_ = std::make_shared<int>(0);
};

}  // namespace iser::initiator

#endif  // ISER_INITIATOR_LUN_HANDLE_H_
