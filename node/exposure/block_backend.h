// The exposure seam, lower half: what an attached LUN offers to the code that turns it
// into a Linux block device.
//
// The initiator's LunHandle implements this through a thin adapter; tests use
// MemoryBlockBackend. Kept minimal on purpose: four asynchronous data calls and the
// geometry.
//
// Threading contract (read this before implementing it):
//  - Calls may arrive from any thread, concurrently (FUSE worker threads, the NBD
//    socket reader). An implementation bound to an EventLoop hops to it with Post().
//  - `done` may run inline (before the call returns) or later on any thread; callers
//    handle both. It runs exactly once.
//  - Buffers passed to Read/Write stay valid until `done` runs.
//  - Offsets and lengths are in bytes; data calls are multiples of block_size() and
//    inside [0, size_bytes()). The exposure layer checks this before calling.
#ifndef NODE_EXPOSURE_BLOCK_BACKEND_H_
#define NODE_EXPOSURE_BLOCK_BACKEND_H_

#include <cstdint>
#include <span>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"

namespace iser::node {

using IoCompletion = absl::AnyInvocable<void(absl::Status)>;

class BlockBackend {
 public:
  virtual ~BlockBackend() = default;

  // Capacity in bytes (a multiple of block_size()).
  virtual uint64_t size_bytes() const = 0;
  // Logical block size of the LUN (512 or 4096 in practice).
  virtual uint32_t block_size() const = 0;

  virtual void Read(uint64_t offset, std::span<uint8_t> dst, IoCompletion done) = 0;
  virtual void Write(uint64_t offset, std::span<const uint8_t> src, IoCompletion done) = 0;
  // Makes every write completed so far durable (SYNCHRONIZE CACHE).
  virtual void Flush(IoCompletion done) = 0;
  // Deallocates the range (UNMAP). Later reads need not return zeroes.
  virtual void Discard(uint64_t offset, uint64_t length, IoCompletion done) = 0;

  // True if discarded blocks read back as zeroes (SCSI LBPRZ). When false, an exposure
  // that must promise zeroes (fallocate PUNCH_HOLE) writes them after discarding.
  virtual bool discard_zeroes() const { return false; }
};

}  // namespace iser::node

#endif  // NODE_EXPOSURE_BLOCK_BACKEND_H_
