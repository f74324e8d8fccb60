// Multiple connections per session (RFC 7143 sec 4.2, 6.3): extra connections log in
// with the session's ISID and TSIH and a CID of their own, negotiate only connection
// keys, and carry SCSI commands issued round robin.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "iser/base/logging.h"
#include "iser/initiator/session.h"

namespace iser::initiator {

void Session::Connection::OnPduReceived(pdu::ReceivedPdu pdu) {
  session->OnPdu(*this, std::move(pdu));
}

std::span<uint8_t> Session::Connection::PlaceData(const pdu::Bhs& bhs) {
  return session->PlaceData(bhs);
}

void Session::Connection::OnTransportClosed(const absl::Status& why) {
  session->OnConnectionClosed(*this, why);
}

Session::Connection* Session::leading() const {
  return !conns_.empty() && conns_.front()->leading ? conns_.front().get() : nullptr;
}

size_t Session::connection_count() const {
  return static_cast<size_t>(
      std::count_if(conns_.begin(), conns_.end(), [](const auto& c) { return c->ready; }));
}

std::vector<uint64_t> Session::commands_per_connection() const {
  std::vector<const Connection*> ready;
  for (const auto& c : conns_) {
    if (c->ready) ready.push_back(c.get());
  }
  std::sort(ready.begin(), ready.end(),
            [](const Connection* a, const Connection* b) { return a->cid < b->cid; });
  std::vector<uint64_t> out;
  for (const Connection* c : ready) out.push_back(c->commands);
  return out;
}

Session::Connection* Session::PickConnection() {
  for (size_t i = 0; i < conns_.size(); ++i) {
    Connection* c = conns_[(next_conn_ + i) % conns_.size()].get();
    if (!c->ready) continue;
    next_conn_ = (next_conn_ + i + 1) % conns_.size();
    return c;
  }
  return nullptr;
}

void Session::AddConnections() {
  if (config_.session_type != login::SessionType::kNormal) return;
  uint32_t want = std::min(config_.connections, params_.max_connections);
  if (config_.connections > want && !ever_added_) {
    ISER_LOG(kInfo, "session %s: the target allows %d connections per session, not %d",
             config_.target_name, static_cast<int>(want), static_cast<int>(config_.connections));
  }
  ever_added_ = true;
  std::weak_ptr<int> alive = life_;
  for (uint32_t cid = 1; cid < want; ++cid) {
    ++extras_pending_;
    uint64_t generation = connection_generation_;
    config_.transport_factory(
        loop_, config_.portal, config_.connect_timeout,
        [this, alive, generation, cid](absl::StatusOr<std::unique_ptr<InitiatorTransport>> t) {
          if (!alive.lock() || generation != connection_generation_) return;
          OnExtraConnected(static_cast<uint16_t>(cid), std::move(t));
        });
  }
}

void Session::OnExtraConnected(uint16_t cid,
                               absl::StatusOr<std::unique_ptr<InitiatorTransport>> transport) {
  absl::Status why;
  if (phase_ != Phase::kFullFeature) {
    why = absl::AbortedError("the session is no longer in full feature phase");
  } else if (!transport.ok()) {
    why = transport.status();
  } else if ((*transport)->kind() != transport_kind_) {
    // One session, one transport: a TCP connection cannot join an iSER session.
    why =
        absl::FailedPreconditionError(absl::StrCat("got ", TransportKindName((*transport)->kind()),
                                                   " but the session uses ", transport_name()));
    (*transport)->Abort(why);
  }
  if (!why.ok()) {
    ISER_LOG(kWarning, "session %s: connection CID %d not added: %s", config_.target_name, cid,
             why.ToString());
    --extras_pending_;
    MaybeFinishLogin();
    return;
  }
  auto c = std::make_unique<Connection>();
  c->session = this;
  c->cid = cid;
  c->leading = false;
  c->transport = std::move(*transport);
  Connection& ref = *c;
  conns_.push_back(std::move(c));
  StartLogin(ref);
}

void Session::ExtraLoginDone(Connection& c, const pdu::Bhs& final_response) {
  CancelTimer(&c.login_timer);
  c.transport->ApplyParams(c.negotiator->params());
  c.negotiator.reset();
  c.ready = true;
  UpdateWindow(final_response);
  --extras_pending_;
  ISER_LOG(kInfo, "session %s: connection CID %d added (%d connections)", config_.target_name,
           c.cid, static_cast<int>(connection_count()));
  MaybeFinishLogin();
  Pump();
}

void Session::ExtraLoginFailed(Connection& c, const absl::Status& why) {
  ISER_LOG(kWarning, "session %s: connection CID %d failed to log in: %s", config_.target_name,
           c.cid, why.ToString());
  CloseConnection(c, why);  // counts it out of extras_pending_
  MaybeFinishLogin();
}

void Session::MaybeFinishLogin() {
  if (extras_pending_ > 0 || !login_done_ || phase_ != Phase::kFullFeature) return;
  StatusCallback done = std::move(login_done_);
  login_done_ = nullptr;
  done(absl::OkStatus());
}

}  // namespace iser::initiator
