// The FPDU receive state machine (GET_HDR -> GET_DATA -> GET_TRAILER), resumable at
// any byte: it reads exactly what the current state needs from a ByteSource, so each
// segment's payload is read straight into its destination (a registered region or a
// receive buffer) with readv, and nothing is copied in user space.
//
// Wire-level checks (DDP/RDMAP versions, opcode, T bit, lengths, CRC) live here; what
// a segment means for the QP (STag validation, receive queue, ORQ/IRQ) lives in the
// RxHandler, which answers with placement iovecs or a Terminate.
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_RX_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_RX_H_

#include <sys/uio.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "iser/transport/rdma/softiwarp/byte_io.h"
#include "iser/transport/rdma/softiwarp/crc32c.h"
#include "iser/transport/rdma/softiwarp/ddp_rdmap_wire.h"
#include "iser/transport/rdma/softiwarp/mpa_wire.h"

namespace iser::softiwarp {

struct RxSegment {
  RdmapOpcode op;
  std::span<const uint8_t> hdr;  // the complete iWARP header, offset 0 = ULPDU_Length
  uint32_t payload_len = 0;
  bool last = false;

  template <typename T>
  T As() const {  // copy of the header as a wire struct (hdr.size() >= sizeof(T))
    T t;
    __builtin_memcpy(&t, hdr.data(), sizeof(T));
    return t;
  }
};

class RxHandler {
 public:
  virtual ~RxHandler() = default;
  // The header of a segment is complete and passed the wire checks. Append iovecs
  // covering exactly seg.payload_len bytes to `dst`, or return the Terminate to send.
  virtual std::optional<TermError> OnSegmentHeader(const RxSegment& seg,
                                                   std::vector<iovec>* dst) = 0;
  // The segment's payload and trailer arrived and the CRC (if on) matched.
  virtual std::optional<TermError> OnSegmentDone(const RxSegment& seg) = 0;
};

class RxMachine {
 public:
  enum class State { kHdr, kData, kTrailer, kDone };
  enum class Outcome {
    kWouldBlock,     // source has no more bytes now
    kEof,            // peer closed the stream (orderly, between or inside FPDUs)
    kIoError,        // read error (io_errno())
    kProtocolError,  // a Terminate must be sent: error() and offending_header()
    kStopped,        // the handler called Stop() (e.g. a Terminate was received)
  };

  RxMachine(RxHandler* handler, bool crc_enabled) : handler_(handler), crc_enabled_(crc_enabled) {}

  // Consumes bytes until the source would block, ends, fails, or an error/stop.
  // After kProtocolError, kStopped, kEof or kIoError the machine is done.
  Outcome Pump(ByteSource& src);

  void Stop() { stop_ = true; }
  void set_crc_enabled(bool on) { crc_enabled_ = on; }
  State state() const { return state_; }
  const TermError& error() const { return error_; }
  int io_errno() const { return io_errno_; }
  // Header bytes of the segment being received (for the Terminate's included headers).
  std::span<const uint8_t> offending_header() const { return {hdr_, hdr_have_}; }
  uint64_t fpdus_received() const { return fpdus_; }

 private:
  std::optional<Outcome> Read(ByteSource& src, iovec* iov, int n, size_t* got);
  Outcome Fail(const TermError& e);
  bool HeaderPrefixComplete();  // validates the first kMinIwarpHdr bytes
  void CrcOverIov(size_t n);
  void ResetSegment();
  void UpdateReadAhead(ByteSource& src);

  RxHandler* handler_;
  bool crc_enabled_;
  State state_ = State::kHdr;
  bool stop_ = false;
  TermError error_;
  int io_errno_ = 0;

  uint8_t hdr_[kMaxIwarpHdr];
  size_t hdr_have_ = 0;
  size_t hdr_need_ = kMinIwarpHdr;
  bool prefix_checked_ = false;
  RdmapOpcode op_ = RdmapOpcode::kSend;
  uint32_t payload_len_ = 0;
  uint32_t pad_ = 0;

  std::vector<iovec> dst_;
  size_t dst_index_ = 0;
  size_t dst_offset_ = 0;
  size_t payload_have_ = 0;

  uint8_t next_[kMinIwarpHdr];  // next FPDU's header prefix read with the trailer
  uint8_t trailer_[3 + kMpaCrcSize];
  size_t trailer_have_ = 0;

  Crc32c crc_;
  uint64_t fpdus_ = 0;
  // Mean payload of recent FPDUs (exponentially weighted) and whether the source was
  // last told to read far ahead (small FPDUs) or not (large ones).
  uint32_t mean_payload_ = 0;
  bool small_fpdus_ = false;
};

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_RX_H_
