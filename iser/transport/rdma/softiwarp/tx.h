// FPDU transmit framing: each FPDU as header | payload iovecs (straight from registered
// memory, no copy) | pad | CRC. Several FPDUs are batched into one writev (a stream of
// small Sends costs one syscall, not one each), resumable after a partial write (siw
// keeps the same partial-send offsets).
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_TX_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_TX_H_

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "iser/transport/rdma/softiwarp/byte_io.h"
#include "iser/transport/rdma/softiwarp/ddp_rdmap_wire.h"
#include "iser/transport/rdma/softiwarp/mpa_wire.h"

namespace iser::softiwarp {

// Largest header we ever send: a Terminate with all included headers.
inline constexpr size_t kMaxTxHdr = sizeof(TerminateHdr) + kMaxTerminatePayload;

class FpduWriter {
 public:
  enum class Result { kDone, kWouldBlock, kError };

  static constexpr size_t kMaxBatch = 32;            // FPDUs per writev
  static constexpr size_t kMaxBatchBytes = 512 << 10;  // payload bytes per writev

  // Adds one FPDU to the batch. `hdr` is the complete iWARP header (offset 0 =
  // ULPDU_Length, which this call fills in). The payload memory must stay valid until
  // Flush returns kDone. Only while CanAppend().
  void Prepare(std::span<const uint8_t> hdr, std::span<const iovec> payload, bool crc);
  // Writes the batch; kDone once all of it is in the socket.
  Result Flush(ByteSink& sink);
  bool busy() const { return busy_; }
  // Room for another FPDU (nothing of the batch written yet, below the limits).
  bool CanAppend() const {
    return !partial_ && slots_used_ < kMaxBatch && batch_bytes_ < kMaxBatchBytes;
  }
  int error() const { return error_; }

 private:
  struct Slot {
    uint8_t hdr[kMaxTxHdr];
    uint8_t trailer[3 + kMpaCrcSize];
  };
  Slot slots_[kMaxBatch];
  size_t slots_used_ = 0;
  size_t batch_bytes_ = 0;
  bool partial_ = false;
  std::vector<iovec> iov_;
  size_t index_ = 0;
  bool busy_ = false;
  int error_ = 0;
};

// Appends to `out` the iovecs covering [offset, offset + len) of the byte sequence
// described by `src`.
void SliceIov(std::span<const iovec> src, uint64_t offset, uint64_t len, std::vector<iovec>* out);

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_TX_H_
