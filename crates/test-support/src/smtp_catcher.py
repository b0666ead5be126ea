"""A real SMTP server for the mail tests (aiosmtpd): it listens on 127.0.0.1 on a free port,
prints the port on its first line of output, and saves each message it receives as a JSON file
(sender, recipients, subject, decoded text body) in the directory named by its argument."""

import asyncio
import email
import email.policy
import json
import os
import sys

from aiosmtpd.smtp import SMTP


class Catcher:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        self.count += 1
        name = os.path.join(self.directory, "%06d.json" % self.count)
        with open(name + ".partial", "w") as f:
            json.dump(
                {
                    "from": envelope.mail_from,
                    "to": envelope.rcpt_tos,
                    "subject": str(message["subject"]),
                    "from_header": str(message["from"]),
                    "body": body.get_content() if body is not None else "",
                },
                f,
            )
        os.rename(name + ".partial", name)
        return "250 OK"


async def main(directory):
    loop = asyncio.get_running_loop()
    handler = Catcher(directory)
    server = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Stops when the test closes our standard input (or kills us).
    await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
