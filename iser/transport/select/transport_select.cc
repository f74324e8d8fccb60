#include "iser/transport/select/transport_select.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "iser/base/logging.h"
#include "iser/transport/tcp/tcp_initiator_connection.h"

namespace iser::transport {

absl::StatusOr<TransportChoice> ParseTransportChoice(absl::string_view text) {
  if (text == "tcp") return TransportChoice::kTcp;
  if (text == "iser") return TransportChoice::kIser;
  if (text == "auto") return TransportChoice::kAuto;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown transport \"", text, "\" (want iser, tcp or auto)"));
}

absl::string_view TransportChoiceName(TransportChoice choice) {
  switch (choice) {
    case TransportChoice::kTcp:
      return "tcp";
    case TransportChoice::kIser:
      return "iser";
    case TransportChoice::kAuto:
      return "auto";
  }
  return "?";
}

initiator::TransportFactory InitiatorTransportFactory(TransportChoice choice,
                                                      TransportSelectOptions options) {
  switch (choice) {
    case TransportChoice::kTcp:
      return TcpTransportFactory();
    case TransportChoice::kIser:
      return iser_transport::IserTransportFactory(options.iser);
    case TransportChoice::kAuto:
      break;
  }
  return [options](EventLoop* loop, const std::string& portal, absl::Duration timeout,
                   initiator::TransportConnectCallback done) {
    absl::Duration iser_timeout = std::min(timeout, options.auto_iser_timeout);
    iser_transport::IserInitiatorConnection::Connect(
        loop, portal, iser_timeout, options.iser,
        [loop, portal, timeout, done = std::move(done)](
            absl::StatusOr<std::unique_ptr<initiator::InitiatorTransport>> t) mutable {
          if (t.ok()) {
            done(std::move(t));
            return;
          }
          ISER_LOG(kWarning, "transport auto: iSER to %s failed (%s); falling back to iSCSI/TCP",
                   portal, std::string(t.status().message()));
          TcpInitiatorConnection::Connect(loop, portal, timeout, std::move(done));
        });
  };
}

}  // namespace iser::transport
