// A minimal iSER initiator for tests, written against the verbs-shaped RDMA API over
// software iWARP: connects with the iSER CM header as MPA private data, logs in over
// Sends with RDMAExtensions=Yes, and issues READ/WRITE with a registered buffer
// advertised through the iSER header's Read/Write STags.
//
// Its objects live on `loop` (run by another thread); the public methods are called
// from the test thread and block until the loop has done the work.
#ifndef TESTS_ISER_TRANSPORT_ISER_ISER_TEST_INITIATOR_H_
#define TESTS_ISER_TRANSPORT_ISER_ISER_TEST_INITIATOR_H_

#include <arpa/inet.h>
#include <sys/epoll.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "iser/base/event_loop.h"
#include "iser/pdu/bhs.h"
#include "iser/transport/iser/iser_header.h"
#include "iser/transport/rdma/cm.h"
#include "iser/transport/rdma/softiwarp/softiwarp.h"
#include "iser/transport/rdma/verbs.h"

namespace iser::iser_transport::testing {

struct IserMessage {
  IserHeader hdr;
  pdu::Bhs bhs;
  std::vector<uint8_t> data;
  bool with_invalidate = false;
  uint32_t invalidated_rkey = 0;
};

class IserTestInitiator {
 public:
  static constexpr size_t kBufSize = 4 << 20;
  static constexpr int kRecvs = 160;
  static constexpr size_t kRecvSize = kIserHeaderSize + pdu::kBhsSize + 256 + 8192;

  explicit IserTestInitiator(EventLoop* loop) : loop_(loop) {}
  ~IserTestInitiator() {
    OnLoop([this] {
      if (cch_) loop_->RemoveFd(cch_->fd());
      if (ch_) loop_->RemoveFd(ch_->fd());
      id_.reset();
      cq_.reset();
      cch_.reset();
      mr_.reset();
      io_mrs_.clear();
      send_mrs_.clear();
      recv_mr_.reset();
      pd_.reset();
      ch_.reset();
      dev_.reset();
    });
  }

  // The data buffer (registered for remote read and write, rkey = stag()).
  uint8_t* buf() { return buf_.data(); }
  uint32_t stag() const { return stag_; }
  uint64_t base() const { return reinterpret_cast<uint64_t>(buf_.data()); }

  // A fresh registration of the whole buffer (as Linux iSER fast-registers per I/O: the
  // target's Send with Invalidate kills the STag of each command).
  uint32_t NewStag() {
    uint32_t stag = 0;
    OnLoop([&] {
      io_mrs_.push_back(*pd_->RegisterMemory(
          buf_.data(), buf_.size(),
          rdma::kAccessLocalWrite | rdma::kAccessRemoteWrite | rdma::kAccessRemoteRead));
      stag = io_mrs_.back()->rkey();
    });
    return stag;
  }
  bool StagValid(uint32_t stag) {
    bool valid = false;
    OnLoop([&] {
      const softiwarp::MrEntry* e = dev_->mrs().Find(stag);
      valid = e != nullptr && e->valid;
    });
    return valid;
  }

  bool Connect(uint16_t port, uint8_t cm_flags = kIserCmZbvaNotSupported) {
    std::promise<bool> done;
    auto fut = done.get_future();
    OnLoop([&] { StartConnect(port, cm_flags, &done); });
    if (fut.wait_for(std::chrono::seconds(10)) != std::future_status::ready) return false;
    return fut.get();
  }
  std::vector<uint8_t> accept_private_data() const { return accept_pd_; }

  // Posts a Send of iSER header + BHS + data.
  // `ahs` (a multiple of 4 bytes) goes between BHS and data; the BHS must count it.
  void Send(const IserHeader& hdr, const pdu::Bhs& bhs, const std::string& data = "",
            const std::vector<uint8_t>& ahs = {}) {
    std::vector<uint8_t> msg(kIserHeaderSize + pdu::kBhsSize + ahs.size() + data.size());
    EncodeIserHeader(hdr, msg);
    std::memcpy(msg.data() + kIserHeaderSize, bhs.data(), pdu::kBhsSize);
    if (!ahs.empty())
      std::memcpy(msg.data() + kIserHeaderSize + pdu::kBhsSize, ahs.data(), ahs.size());
    std::memcpy(msg.data() + kIserHeaderSize + pdu::kBhsSize + ahs.size(), data.data(),
                data.size());
    SendRaw(std::move(msg));
  }
  void SendRaw(std::vector<uint8_t> msg) {
    OnLoop([this, m = std::move(msg)]() mutable {
      sends_.push_back(std::move(m));
      auto& b = sends_.back();
      send_mrs_.push_back(*pd_->RegisterMemory(b.data(), b.size(), rdma::kAccessLocalWrite));
      rdma::Sge sge{reinterpret_cast<uint64_t>(b.data()), static_cast<uint32_t>(b.size()),
                    send_mrs_.back()->lkey()};
      rdma::SendWr wr;
      wr.opcode = rdma::WrOpcode::kSend;
      wr.send_flags = rdma::kSendSignaled;
      wr.sg_list = {&sge, 1};
      (void)id_->qp()->PostSend(wr);
    });
  }

  std::optional<IserMessage> Receive(int timeout_ms = 5000) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::milliseconds(timeout_ms),
                 [&] { return !inbox_.empty() || closed_; });
    if (inbox_.empty()) return std::nullopt;
    IserMessage m = std::move(inbox_.front());
    inbox_.pop_front();
    return m;
  }
  bool WaitClosed(int timeout_ms = 5000) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] { return closed_; });
  }
  // Every message received so far (also those taken by Receive) by BHS opcode.
  std::vector<pdu::Opcode> opcodes_seen() {
    std::lock_guard<std::mutex> l(mu_);
    return seen_;
  }

  // Login in the operational stage with RDMAExtensions=Yes.
  bool Login(const std::string& target_name, uint64_t isid = 0x23d000000002ULL, uint16_t tsih = 0,
             uint16_t cid = 0, uint32_t cmd_sn = 1, uint32_t target_recv_dsl = 8192) {
    cmd_sn_ = cmd_sn;
    pdu::Bhs b = pdu::Bhs::Make(pdu::Opcode::kLoginRequest, 0x80 | (1 << 2) | 3);
    b.set_immediate(true);
    b.set_u48(pdu::field::kIsid, isid);
    b.set_u16(pdu::field::kTsih, tsih);
    b.set_u16(pdu::field::kCid, cid);
    b.set_itt(next_itt_++);
    b.set_u32(pdu::field::kCmdSn, cmd_sn_);
    std::string text;
    std::vector<std::string> proposed;  // key names: their answers are not echoed back
    for (const std::string& kv : std::vector<std::string>{
             "InitiatorName=iqn.2026-11.org.iser-csi:iser-test-initiator", "SessionType=Normal",
             "TargetName=" + target_name, "RDMAExtensions=Yes", "HeaderDigest=None",
             "DataDigest=None", "InitialR2T=No", "ImmediateData=Yes", "MaxBurstLength=262144",
             "FirstBurstLength=65536", "MaxOutstandingR2T=2", "InitiatorRecvDataSegmentLength=8192",
             "TargetRecvDataSegmentLength=" + std::to_string(target_recv_dsl),
             "MaxOutstandingUnexpectedPDUs=0", "DefaultTime2Wait=2", "DefaultTime2Retain=0",
             "ErrorRecoveryLevel=0"}) {
      text += kv;
      text.push_back('\0');
      proposed.push_back(kv.substr(0, kv.find('=') + 1));
    }
    Send(IserHeader::Control(), WithLength(b, text.size()), text);
    for (int i = 0; i < 4; ++i) {
      auto rsp = Receive();
      if (!rsp || rsp->bhs.opcode() != pdu::Opcode::kLoginResponse) return false;
      login_text_.assign(rsp->data.begin(), rsp->data.end());
      all_login_text_.append(login_text_);
      if (rsp->bhs.byte(pdu::field::kLoginStatusClass) != 0) return false;
      exp_stat_sn_ = rsp->bhs.u32(pdu::field::kStatSn) + 1;
      if ((rsp->bhs.flags() & 0x83) == 0x83) {
        cmd_sn_ = rsp->bhs.u32(pdu::field::kExpCmdSn);
        tsih_ = rsp->bhs.u16(pdu::field::kTsih);
        return true;
      }
      std::string answer;
      for (size_t pos = 0; pos < login_text_.size();) {
        size_t end = login_text_.find('\0', pos);
        if (end == std::string::npos) end = login_text_.size();
        std::string kv = login_text_.substr(pos, end - pos);
        pos = end + 1;
        bool ours = std::any_of(proposed.begin(), proposed.end(),
                                [&](const std::string& k) { return kv.rfind(k, 0) == 0; });
        if (kv.empty() || ours || kv.find("RecvDataSegmentLength=") != std::string::npos ||
            kv.rfind("TargetPortalGroupTag=", 0) == 0 || kv.rfind("TargetAlias=", 0) == 0)
          continue;
        answer += kv;
        answer.push_back('\0');
      }
      pdu::Bhs again = b;
      again.set_u32(pdu::field::kExpStatSn, exp_stat_sn_);
      Send(IserHeader::Control(), WithLength(again, answer.size()), answer);
    }
    return false;
  }
  // Every key the target sent during login, over all its Login Responses.
  const std::string& login_text() const { return all_login_text_; }
  uint16_t tsih() const { return tsih_; }
  uint32_t cmd_sn() const { return cmd_sn_; }
  void set_cmd_sn(uint32_t sn) { cmd_sn_ = sn; }
  // Drops the connection at once (QP to error: the target sees it die).
  void Kill() {
    OnLoop([this] { (void)id_->qp()->MoveToError(); });
  }

  // A SCSI command; `hdr` carries the STags. Returns the ITT.
  uint32_t SendCommand(const IserHeader& hdr, std::vector<uint8_t> cdb, uint32_t edtl, bool read,
                       bool write, const std::string& immediate = "", bool final_bit = true,
                       const std::vector<uint8_t>& ahs = {}) {
    pdu::Bhs b =
        pdu::Bhs::Make(pdu::Opcode::kScsiCommand,
                       (final_bit ? 0x80 : 0) | (read ? 0x40 : 0) | (write ? 0x20 : 0) | 1);
    uint32_t itt = next_itt_++;
    b.set_itt(itt);
    b.set_u32(pdu::field::kEdtl, edtl);
    b.set_u32(pdu::field::kCmdSn, cmd_sn_++);
    b.set_u32(pdu::field::kExpStatSn, exp_stat_sn_);
    cdb.resize(16, 0);
    std::copy(cdb.begin(), cdb.end(), b.data() + pdu::field::kCdb);
    b.set_ahs_words(static_cast<uint8_t>(ahs.size() / 4));
    Send(hdr, WithLength(b, immediate.size()), immediate, ahs);
    return itt;
  }
  // An unsolicited Data-Out PDU.
  void SendDataOut(uint32_t itt, uint32_t data_sn, uint32_t offset, const std::string& data,
                   bool final_bit) {
    pdu::Bhs b = pdu::Bhs::Make(pdu::Opcode::kDataOut, final_bit ? 0x80 : 0);
    b.set_itt(itt);
    b.set_ttt(pdu::kReservedTag);
    b.set_u32(pdu::field::kExpStatSn, exp_stat_sn_);
    b.set_u32(pdu::field::kDataSn, data_sn);
    b.set_u32(pdu::field::kBufferOffset, offset);
    Send(IserHeader::Control(), WithLength(b, data.size()), data);
  }

  static pdu::Bhs WithLength(pdu::Bhs b, size_t len) {
    b.set_data_segment_length(static_cast<uint32_t>(len));
    return b;
  }

 private:
  void OnLoop(std::function<void()> fn) {
    if (loop_->IsLoopThread()) {
      fn();
      return;
    }
    std::promise<void> p;
    loop_->Post([&] {
      fn();
      p.set_value();
    });
    p.get_future().wait();
  }

  void StartConnect(uint16_t port, uint8_t cm_flags, std::promise<bool>* done) {
    connect_done_ = done;
    cm_flags_ = cm_flags;
    dev_ = softiwarp::OpenDevice(loop_);
    ch_ = *softiwarp::CreateEventChannel(dev_.get());
    pd_ = *dev_->AllocPd();
    cch_ = *dev_->CreateCompletionChannel();
    cq_ = *dev_->CreateCq(1024, nullptr, cch_.get());
    (void)cq_->RequestNotify(false);
    buf_.assign(kBufSize, 0);
    mr_ = *pd_->RegisterMemory(
        buf_.data(), buf_.size(),
        rdma::kAccessLocalWrite | rdma::kAccessRemoteWrite | rdma::kAccessRemoteRead);
    stag_ = mr_->rkey();
    recv_buf_.assign(kRecvs * kRecvSize, 0);
    recv_mr_ = *pd_->RegisterMemory(recv_buf_.data(), recv_buf_.size(), rdma::kAccessLocalWrite);
    (void)loop_->AddFd(cch_->fd(), EPOLLIN, [this](uint32_t) { OnCq(); });
    (void)loop_->AddFd(ch_->fd(), EPOLLIN, [this](uint32_t) { OnCm(); });
    id_ = *ch_->CreateId(nullptr);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!id_->ResolveAddr(a, absl::Seconds(1)).ok()) Finish(false);
  }
  void Finish(bool ok) {
    if (connect_done_ != nullptr) connect_done_->set_value(ok);
    connect_done_ = nullptr;
  }
  void PostRecv(int i) {
    rdma::Sge sge{reinterpret_cast<uint64_t>(recv_buf_.data() + i * kRecvSize),
                  static_cast<uint32_t>(kRecvSize), recv_mr_->lkey()};
    rdma::RecvWr wr;
    wr.wr_id = static_cast<uint64_t>(i);
    wr.sg_list = {&sge, 1};
    (void)id_->qp()->PostRecv(wr);
  }
  void OnCm() {
    for (auto e = ch_->GetEvent(); e.ok(); e = ch_->GetEvent()) {
      switch (e->type) {
        case rdma::CmEventType::kAddrResolved:
          (void)id_->ResolveRoute(absl::Seconds(1));
          break;
        case rdma::CmEventType::kRouteResolved: {
          rdma::QpInitAttr attr;
          attr.send_cq = cq_.get();
          attr.recv_cq = cq_.get();
          if (!id_->CreateQp(pd_.get(), attr).ok()) return Finish(false);
          for (int i = 0; i < kRecvs; ++i) PostRecv(i);
          rdma::ConnParam p;
          p.private_data = {cm_flags_, 0, 0, 0};
          if (!id_->Connect(p).ok()) Finish(false);
          break;
        }
        case rdma::CmEventType::kEstablished:
          accept_pd_ = e->param.private_data;
          Finish(true);
          break;
        default:
          Finish(false);
          MarkClosed();
          break;
      }
    }
  }
  void MarkClosed() {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  void OnCq() {
    for (auto cq = cch_->GetEvent(); cq.ok(); cq = cch_->GetEvent()) {
    }
    (void)cq_->RequestNotify(false);
    rdma::WorkCompletion wc[16];
    for (int n; (n = cq_->Poll(wc)) > 0;) {
      for (int i = 0; i < n; ++i) {
        if (wc[i].status != rdma::WcStatus::kSuccess) {
          MarkClosed();
          continue;
        }
        if (wc[i].opcode != rdma::WcOpcode::kRecv) continue;
        int idx = static_cast<int>(wc[i].wr_id);
        std::span<const uint8_t> msg(recv_buf_.data() + idx * kRecvSize, wc[i].byte_len);
        IserMessage m;
        auto hdr = DecodeIserHeader(msg);
        if (hdr.ok()) m.hdr = *hdr;
        if (hdr.ok() && msg.size() >= kIserHeaderSize + pdu::kBhsSize) {
          m.bhs = pdu::Bhs(
              std::span<const uint8_t, pdu::kBhsSize>(msg.data() + kIserHeaderSize, pdu::kBhsSize));
          m.data.assign(msg.begin() + kIserHeaderSize + pdu::kBhsSize, msg.end());
        }
        m.with_invalidate = wc[i].wc_flags & rdma::kWcWithInv;
        m.invalidated_rkey = wc[i].invalidated_rkey;
        PostRecv(idx);
        std::lock_guard<std::mutex> l(mu_);
        seen_.push_back(m.bhs.opcode());
        inbox_.push_back(std::move(m));
        cv_.notify_all();
      }
    }
  }

  EventLoop* loop_;
  std::unique_ptr<softiwarp::SoftDevice> dev_;
  std::unique_ptr<rdma::CmEventChannel> ch_;
  std::unique_ptr<rdma::ProtectionDomain> pd_;
  std::unique_ptr<rdma::CompletionChannel> cch_;
  std::unique_ptr<rdma::CompletionQueue> cq_;
  std::unique_ptr<rdma::CmId> id_;
  std::vector<uint8_t> buf_;
  std::unique_ptr<rdma::MemoryRegion> mr_;
  std::vector<std::unique_ptr<rdma::MemoryRegion>> io_mrs_;
  uint32_t stag_ = 0;
  std::vector<uint8_t> recv_buf_;
  std::unique_ptr<rdma::MemoryRegion> recv_mr_;
  std::deque<std::vector<uint8_t>> sends_;
  std::vector<std::unique_ptr<rdma::MemoryRegion>> send_mrs_;
  std::promise<bool>* connect_done_ = nullptr;
  uint8_t cm_flags_ = 0;
  std::vector<uint8_t> accept_pd_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<IserMessage> inbox_;
  std::vector<pdu::Opcode> seen_;
  bool closed_ = false;

  uint32_t next_itt_ = 1;
  uint32_t cmd_sn_ = 1;
  uint16_t tsih_ = 0;
  uint32_t exp_stat_sn_ = 0;
  std::string login_text_;
  std::string all_login_text_;
};

}  // namespace iser::iser_transport::testing

#endif  // TESTS_ISER_TRANSPORT_ISER_ISER_TEST_INITIATOR_H_
