// FPDU transmit framing: one FPDU at a time as header | payload iovecs (straight from
// registered memory, no copy) | pad | CRC, written with writev and resumable after a
// partial write (siw keeps the same partial-send offsets).
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

  // Prepares one FPDU. `hdr` is the complete iWARP header (offset 0 = ULPDU_Length,
  // which this call fills in). The payload memory must stay valid until kDone.
  void Prepare(std::span<const uint8_t> hdr, std::span<const iovec> payload, bool crc);
  Result Flush(ByteSink& sink);
  bool busy() const { return busy_; }
  int error() const { return error_; }

 private:
  uint8_t hdr_[kMaxTxHdr];
  uint8_t trailer_[3 + kMpaCrcSize];
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
