// A minimal blocking iSCSI initiator over a raw socket, for tests that need to send PDUs
// a well-behaved initiator never would.
#ifndef TESTS_ISER_TARGET_RAW_INITIATOR_H_
#define TESTS_ISER_TARGET_RAW_INITIATOR_H_

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "iser/pdu/bhs.h"
#include "iser/pdu/pdu_reader.h"

namespace iser::target::testing {

class RawInitiator {
 public:
  explicit RawInitiator(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~RawInitiator() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }

  void SendRaw(const std::vector<uint8_t>& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  void Send(pdu::Bhs bhs, const std::string& data = "") {
    bhs.set_data_segment_length(static_cast<uint32_t>(data.size()));
    std::vector<uint8_t> w(bhs.data(), bhs.data() + pdu::kBhsSize);
    w.insert(w.end(), data.begin(), data.end());
    w.resize(pdu::kBhsSize + pdu::PaddedLength(static_cast<uint32_t>(data.size())), 0);
    SendRaw(w);
  }

  // The next PDU, or nullopt if the target closed the connection (or 5 s passed).
  std::optional<pdu::ReceivedPdu> Receive() {
    reader_.set_max_data_segment(1 << 20);
    for (;;) {
      if (pos_ < buf_.size()) {
        bool complete = false;
        auto used = reader_.Feed({buf_.data() + pos_, buf_.size() - pos_}, &complete);
        if (!used.ok()) return std::nullopt;
        pos_ += *used;
        if (complete) return reader_.TakePdu();
        continue;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return std::nullopt;
      uint8_t tmp[65536];
      ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) {
        closed_ = true;
        return std::nullopt;
      }
      buf_.assign(tmp, tmp + n);
      pos_ = 0;
    }
  }

  // True when the target closed the connection (EOF, not a 5 s silence); PDUs that came
  // before the close are collected into `before`.
  bool WaitClosed(std::vector<pdu::ReceivedPdu>* before = nullptr) {
    for (;;) {
      auto p = Receive();
      if (!p) return closed_;
      if (before) before->push_back(std::move(*p));
    }
  }

  // Login straight into full feature phase with AuthMethod skipped (operational stage).
  bool Login(const std::string& target_name, uint64_t isid = 0x23d000000001ULL, uint16_t tsih = 0,
             uint16_t cid = 0) {
    pdu::Bhs b = pdu::Bhs::Make(pdu::Opcode::kLoginRequest, 0x80 | (1 << 2) | 3);
    b.set_immediate(true);
    b.set_u48(pdu::field::kIsid, isid);
    b.set_u16(pdu::field::kTsih, tsih);
    b.set_u16(pdu::field::kCid, cid);
    b.set_itt(next_itt_++);
    b.set_u32(pdu::field::kCmdSn, cmd_sn_);
    std::string text = "InitiatorName=iqn.2026-11.org.iser-csi:test-initiator";
    text.push_back('\0');
    text += "SessionType=Normal";
    text.push_back('\0');
    text += "TargetName=" + target_name;
    text.push_back('\0');
    text += "HeaderDigest=None";
    text.push_back('\0');
    text += "DataDigest=None";
    text.push_back('\0');
    text += initial_r2t ? "InitialR2T=Yes" : "InitialR2T=No";
    text.push_back('\0');
    for (const char* kv : {"ImmediateData=Yes", "MaxBurstLength=262144", "FirstBurstLength=65536",
                           "MaxRecvDataSegmentLength=262144", "MaxOutstandingR2T=1",
                           "DefaultTime2Wait=2", "DefaultTime2Retain=0", "DataPDUInOrder=Yes",
                           "DataSequenceInOrder=Yes", "ErrorRecoveryLevel=0", "MaxConnections=4"}) {
      if (tsih != 0 && std::string(kv).rfind("MaxConnections", 0) == 0) continue;
      text += kv;
      text.push_back('\0');
    }
    Send(b, text);
    for (int i = 0; i < 4; ++i) {
      auto rsp = Receive();
      if (!rsp || rsp->bhs.opcode() != pdu::Opcode::kLoginResponse) return false;
      last_login_text_.assign(rsp->data.begin(), rsp->data.end());
      if (rsp->bhs.byte(pdu::field::kLoginStatusClass) != 0) {
        fprintf(stderr, "login refused: status %02x%02x\n",
                rsp->bhs.byte(pdu::field::kLoginStatusClass),
                rsp->bhs.byte(pdu::field::kLoginStatusDetail));
        return false;
      }
      exp_stat_sn_ = rsp->bhs.u32(pdu::field::kStatSn) + 1;
      if ((rsp->bhs.flags() & 0x83) == 0x83) {  // T=1, NSG=FFP
        tsih_ = rsp->bhs.u16(pdu::field::kTsih);
        cmd_sn_ = rsp->bhs.u32(pdu::field::kExpCmdSn);
        return true;
      }
      // The target wants another round: accept whatever it proposed (echo the values;
      // declarative keys need no answer).
      std::string answer;
      for (size_t pos = 0; pos < last_login_text_.size();) {
        size_t end = last_login_text_.find('\0', pos);
        if (end == std::string::npos) end = last_login_text_.size();
        std::string kv = last_login_text_.substr(pos, end - pos);
        pos = end + 1;
        if (kv.rfind("MaxRecvDataSegmentLength=", 0) == 0 ||
            kv.rfind("TargetPortalGroupTag=", 0) == 0 || kv.rfind("TargetAlias=", 0) == 0 ||
            kv.empty())
          continue;
        answer += kv;
        answer.push_back('\0');
      }
      pdu::Bhs again = b;
      again.set_u32(pdu::field::kExpStatSn, exp_stat_sn_);
      Send(again, answer);
    }
    return false;
  }

  // A SCSI command with an optional CDB and EDTL; returns the ITT used.
  uint32_t SendCommand(std::vector<uint8_t> cdb, uint32_t edtl, bool read, bool write,
                       const std::string& immediate = "") {
    pdu::Bhs b = pdu::Bhs::Make(pdu::Opcode::kScsiCommand,
                                0x80 | (read ? 0x40 : 0) | (write ? 0x20 : 0) | 1);
    uint32_t itt = next_itt_++;
    b.set_itt(itt);
    b.set_u32(pdu::field::kEdtl, edtl);
    b.set_u32(pdu::field::kCmdSn, cmd_sn_++);
    b.set_u32(pdu::field::kExpStatSn, exp_stat_sn_);
    cdb.resize(16, 0);
    std::copy(cdb.begin(), cdb.end(), b.data() + pdu::field::kCdb);
    Send(b, immediate);
    return itt;
  }

  bool initial_r2t = true;  // what Login proposes

  uint32_t cmd_sn() const { return cmd_sn_; }
  void set_cmd_sn(uint32_t sn) { cmd_sn_ = sn; }
  uint16_t tsih() const { return tsih_; }
  uint32_t next_itt() { return next_itt_++; }
  uint32_t exp_stat_sn() const { return exp_stat_sn_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  uint16_t tsih_ = 0;
  pdu::PduReader reader_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
  uint32_t next_itt_ = 1;
  uint32_t cmd_sn_ = 1;
  uint32_t exp_stat_sn_ = 0;
  std::string last_login_text_;
};

}  // namespace iser::target::testing

#endif  // TESTS_ISER_TARGET_RAW_INITIATOR_H_
