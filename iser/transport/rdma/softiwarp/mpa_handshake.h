// MPA connection setup (RFC 5044 sec 7.1, RFC 6581): reading a request/reply frame
// resumably from a byte stream, and the negotiation rules both ends apply (CRC, no
// markers, MPA v2 IRD/ORD and peer-to-peer RTR).
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_MPA_HANDSHAKE_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_MPA_HANDSHAKE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "iser/transport/rdma/softiwarp/byte_io.h"
#include "iser/transport/rdma/softiwarp/mpa_wire.h"

namespace iser::softiwarp {

// Reads exactly one frame (20-byte header, then PD_Length bytes), never more, so the
// first FPDU that may follow stays in the socket for the QP.
class MpaFrameReader {
 public:
  enum class Outcome { kNeedMore, kDone, kBadFrame, kEof, kIoError };
  explicit MpaFrameReader(bool expect_reply) : expect_reply_(expect_reply) {}
  Outcome Pump(ByteSource& src);
  // Valid after kDone.
  const MpaFrame& frame() const { return frame_; }
  const absl::Status& error() const { return error_; }

 private:
  bool expect_reply_;
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(sizeof(MpaFrameHeader));
  size_t have_ = 0;
  bool header_done_ = false;
  MpaFrame frame_;
  absl::Status error_;
};

inline constexpr uint16_t kMaxIrdOrd = 128;  // as siw

// What a connection runs with after the handshake.
struct MpaNegotiated {
  bool crc = false;
  uint32_t ird = 0;         // our inbound Read limit
  uint32_t ord = 0;         // our outbound Read limit
  uint8_t rtr = kRtrNone;   // initiator: RTR to send; responder: RTR to expect
};

struct MpaLocal {
  bool crc = true;
  bool enhanced = true;
  bool peer_to_peer = true;
  uint16_t ird = 16;
  uint16_t ord = 16;
};

// Initiator: the request frame. We offer RDMA Write as RTR (the only one we send).
MpaFrame MakeMpaRequest(const MpaLocal& local, std::span<const uint8_t> private_data);

// Responder: the reply to `req`. Markers requested -> a reject (siw does the same).
// Fills `out` when the reply accepts.
MpaFrame MakeMpaReply(const MpaFrame& req, const MpaLocal& local,
                      std::span<const uint8_t> private_data, bool reject, MpaNegotiated* out);

// Initiator: checks the (non-reject) reply against what we requested.
absl::StatusOr<MpaNegotiated> ProcessMpaReply(const MpaFrame& req, const MpaFrame& reply);

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_MPA_HANDSHAKE_H_
