// What both ends of an iSER connection do the same way with a received Send: take the
// control PDU out of it, and turn a failed work completion into the connection's error.
#ifndef ISER_TRANSPORT_ISER_ISER_CONTROL_H_
#define ISER_TRANSPORT_ISER_ISER_CONTROL_H_

#include <cstddef>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iser/pdu/pdu_reader.h"
#include "iser/transport/rdma/rdma_types.h"

namespace iser::iser_transport {

// The BHS, AHS and data segment that follow the iSER header of a Send (`pdu_bytes`),
// copied out so the receive buffer can be reposted at once. InvalidArgument when the
// Send is shorter than its BHS says, longer than that padded to 4 bytes, or exceeds
// `max_ahs` / `max_data`.
absl::StatusOr<pdu::ReceivedPdu> ParseControlPdu(std::span<const uint8_t> pdu_bytes, size_t max_ahs,
                                                 size_t max_data);

// The error a failed work completion closes the connection with.
absl::Status CompletionError(const rdma::WorkCompletion& wc);

}  // namespace iser::iser_transport

#endif  // ISER_TRANSPORT_ISER_ISER_CONTROL_H_
