"""A complaint email as a mail server delivers it (RFC 822, encoded-word headers), shared by feedback tests."""

COMPLAINT_MAIL = (
    "From: =?utf-8?b?5byg5LiJ?= <c1@example.com>\r\nTo: service@example.com\r\n"
    "Subject: =?utf-8?b?5oqV6K+J77ya6K6i5Y2VIFlELTAwMDAwMQ==?=\r\n"  # 投诉：订单 YD-000001
    "Message-ID: <20261204160000.A1@mail.example.com>\r\nDate: Fri, 04 Dec 2026 16:00:00 +0800\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "收到的保温杯外包装破损，杯盖坏了，很不满意。\r\n"
).encode()
