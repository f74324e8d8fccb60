// Choosing the initiator's transport at run time: "iser", "tcp" or "auto" (the same word
// in iser-attach --transport and the StorageClass parameter).
//
// auto tries iSER first and falls back to iSCSI/TCP with a log line saying why. Where a
// real RDMA device exists the verbs backend will be tried first; here iSER runs over
// software iWARP on the same TCP port.
#ifndef ISER_TRANSPORT_SELECT_TRANSPORT_SELECT_H_
#define ISER_TRANSPORT_SELECT_TRANSPORT_SELECT_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "iser/initiator/initiator_transport.h"
#include "iser/transport/iser/iser_initiator_connection.h"

namespace iser::transport {

enum class TransportChoice { kTcp, kIser, kAuto };

absl::StatusOr<TransportChoice> ParseTransportChoice(absl::string_view text);
absl::string_view TransportChoiceName(TransportChoice choice);

struct TransportSelectOptions {
  iser_transport::IserInitiatorOptions iser;
  // auto: how long the iSER attempt may take before falling back (a plain iSCSI target
  // reads our MPA Request as the start of a login PDU and waits for more, so the
  // attempt only ends with this timeout or the target closing the connection).
  absl::Duration auto_iser_timeout = absl::Seconds(3);
};

initiator::TransportFactory InitiatorTransportFactory(TransportChoice choice,
                                                      TransportSelectOptions options = {});

}  // namespace iser::transport

#endif  // ISER_TRANSPORT_SELECT_TRANSPORT_SELECT_H_
