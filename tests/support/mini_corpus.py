"""A small mixed-format knowledge base with frozen questions (written 2026-12-01).

``write_mini_corpus(folder)`` writes five documents about an invented company,
Brightwater Hydrometrics, and its Kestrel KX-3 water-quality buoy:

* ``field_handbook.md``   Markdown handbook with several sections
* ``incident_INC-2291.html``  HTML incident report
* ``facilities_notice.txt``   plain-text notice
* ``kx3_datasheet.pdf``   a 2-page PDF with a text layer (reportlab)
* ``council_minutes.docx``    meeting minutes (python-docx)

and returns the questions. Every answerable question asks for one fact that occurs in
exactly one file; its ``answer_contains`` strings occur in that file's text and in no other
file's text (``tests/eval/test_eval_data.py`` checks this). The unanswerable questions
sound related but no file answers them. Like the other evaluation sets, these questions
were written before any measurement and are frozen: do not tune product code on them.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MiniQuestion:
    question: str
    source_name: str | None  # the file name that answers it; None when unanswerable
    answer_contains: tuple[str, ...]  # compared case-insensitively; empty when unanswerable
    kind: str  # keyword, paraphrase, specific or unanswerable


HANDBOOK_MD = "field_handbook.md"
INCIDENT_HTML = "incident_INC-2291.html"
NOTICE_TXT = "facilities_notice.txt"
DATASHEET_PDF = "kx3_datasheet.pdf"
MINUTES_DOCX = "council_minutes.docx"

SOURCE_NAMES = (HANDBOOK_MD, INCIDENT_HTML, NOTICE_TXT, DATASHEET_PDF, MINUTES_DOCX)


HANDBOOK = """\
# Brightwater Hydrometrics: Field Engineering Handbook

This handbook applies to everyone in the field engineering group who installs, services or
recovers Kestrel buoys. It is maintained by the operations office; send corrections to the
handbook owner, Astrid Lindqvist.

## Working hours

Core hours are 10:00 to 15:00, Oslo time. Outside the core hours you may arrange your day
freely, as long as field days are logged in the Tidewatch portal before you leave the site.
Travel time to a mooring counts as working time from the moment you leave the depot.

## Annual leave

Every full-time engineer receives 27 days of paid annual leave per calendar year. Unused days
may be carried over until the end of March of the following year; after that they expire.
Leave requests go through Tidewatch and need your team lead's approval at least two weeks
ahead during the deployment season (May to September).

## Field safety

Boat work always needs a crew of two people; nobody goes out alone. Trips are cancelled when
the forecast wind speed exceeds 12 metres per second at the mooring. Lone work on shore is
allowed, but you must check in through the SafeLine app every two hours. Inflatable life
jackets are serviced each spring and replaced after four seasons of use.

## Expenses

On a field day you may claim a meal allowance of 38 EUR without receipts. Driving your own
car is reimbursed at 0.46 EUR per kilometre. All other costs need a receipt and must be filed
in the Ledgerline expense tool within thirty days.

## On-call duty

The on-call rotation runs for one week and the handover happens every Tuesday at 09:00. The
engineer on call receives a stipend of 240 EUR per week and must acknowledge an alarm within
twenty minutes, day or night.

## Equipment

Loaned sensors and tools must be returned to the depot within ten working days after a job.
Calibrated reference probes are kept in the locked cabinet in Lab B2; sign them out on the
clipboard by the door.
"""

INCIDENT = """\
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Incident report INC-2291</title>
<style>body { font-family: sans-serif; } .meta { color: #555; }</style></head>
<body>
<nav>Status page | Incidents | Runbooks</nav>
<main>
<h1>Incident report INC-2291: telemetry ingestion outage</h1>
<p class="meta">Severity 2. Status: resolved. Report written by the reliability team.</p>

<h2>Summary</h2>
<p>On 17 March 2026 the telemetry ingestion service stopped accepting readings from the
buoy fleet. The outage began at 02:14 UTC and lasted 47 minutes. During that time
1,842 buoys could not deliver their measurements and kept them in local storage.</p>

<h2>Detection</h2>
<p>The alert <code>ingest-lag-high</code> paged the on-call engineer, Priya Raman, who opened
the incident and acted as incident commander. Customers were informed on the status page
eleven minutes after the first page.</p>

<h2>Root cause</h2>
<p>The TLS certificate on the gateway <code>gw-east-2</code> had expired. The buoys refused
the connection because they validate the certificate chain, so every upload failed. The
certificate had been renewed by hand the year before and its renewal was not tracked by any
automation.</p>

<h2>Impact</h2>
<p>No measurements were lost: each buoy buffers up to 72 hours of readings and uploaded the
backlog once the gateway was fixed. Dashboards showed stale values for about an hour, and
two customers opened support tickets.</p>

<h2>Resolution</h2>
<p>A new certificate was installed on gw-east-2 and the ingestion workers were restarted.
Backlog uploads finished at 03:40 UTC.</p>

<h2>Follow-up actions</h2>
<ul>
<li>Automate certificate renewal for all gateways and warn 21 days before expiry
(owner: Jonas Eklund, due 30 April 2026).</li>
<li>Add a synthetic upload check that runs every five minutes from outside the network.</li>
<li>Document the manual renewal steps in the gateway runbook.</li>
</ul>
</main>
<footer>Brightwater Hydrometrics reliability team</footer>
</body>
</html>
"""

NOTICE = """\
FACILITIES NOTICE: BUILDING C AND NORTH CAR PARK
Brightwater Hydrometrics, Havnegata site

1. Lift maintenance in Building C
The passenger lift in Building C will be out of service on Thursday 9 April 2026 from
07:30 to 12:15 while the contractor replaces the door sensors and the control board.
Please use stairwell B during this time. If you need help carrying equipment between
floors, ask the goods reception and they will arrange a porter.

2. Car park resurfacing
The north car park is closed for resurfacing on the same day. Staff who normally park
there may use the visitor spaces along the harbour road. Please do not park on the
loading bay in front of the workshop; it must stay free for deliveries.

3. Fire drill
A fire drill takes place on Wednesday 22 April at 11:05. When the alarm sounds, leave by
the nearest exit and walk to the assembly point at the flagpole by the east gate. Fire
wardens wear yellow vests and will take a head count there. Do not use the lift during
the drill.

4. Contact
Questions about this notice go to the facilities desk on extension 4417, or stop by the
desk on the ground floor of Building A. Thank you for your patience.
"""

# Each page is a list of blocks: "# " starts a heading, anything else is a paragraph.
DATASHEET_PAGES: tuple[tuple[str, ...], ...] = (
    (
        "# Kestrel KX-3 Water-Quality Buoy: Product Data Sheet (page 1 of 2)",
        "# Overview",
        "The Kestrel KX-3 is a compact moored buoy for continuous water-quality monitoring in "
        "lakes, reservoirs and sheltered coastal waters. It measures dissolved oxygen, "
        "turbidity, conductivity and water temperature, and sends its readings over the mobile "
        "network to the Brightwater cloud service.",
        "# Power and sampling",
        "A sealed lithium pack gives a battery life of 19 months at the default sampling "
        "interval of one reading every fifteen minutes. A small solar collar extends the "
        "service interval in sunny regions but is not required.",
        "# Environmental ratings",
        "Operating temperature: minus 25 to plus 60 degrees Celsius.",
        "Depth rating of the sensor head: 40 metres.",
        "Hull: UV-stabilised polyethylene, ice-resistant down to a thin surface layer.",
    ),
    (
        "# Kestrel KX-3 Water-Quality Buoy: Product Data Sheet (page 2 of 2)",
        "# Maintenance",
        "The optical oxygen and turbidity sensors should be calibrated every 180 days with the "
        "KX calibration kit. Wipers keep the optical windows clean between visits.",
        "# Firmware",
        "Firmware version 4.2.7 adds adaptive sampling: the buoy samples more often when "
        "readings change quickly, for example after heavy rain, and falls back to the normal "
        "interval later.",
        "# Warranty and price",
        "Every KX-3 ships with a three-year warranty covering the hull, electronics and "
        "battery. The list price is 2,950 EUR per unit, excluding mooring hardware and the "
        "data plan.",
    ),
)

MINUTES = {
    "title": "Product Council: Minutes of 5 February 2026",
    "meta": (
        "Chair: Tomasz Wielgus. Present: Astrid Lindqvist (operations), Jonas Eklund "
        "(platform), Mei Takahashi (sales), Farid Haddad (finance). Minutes taken by "
        "Mei Takahashi."
    ),
    "sections": (
        (
            "1. Kestrel KX-3 launch date",
            "The council reviewed the results of the winter field trials. The buoys performed "
            "well, but the mobile modem certification for two export markets is still "
            "pending. The council decided to move the commercial launch of the KX-3 to "
            "16 September 2026 so that both certifications can be completed first.",
        ),
        (
            "2. Municipal pilot",
            "The council approved a budget of 312,000 EUR for the pilot with the Vestfjord "
            "municipality. The pilot covers 64 buoys in three drinking-water reservoirs, "
            "the data plan for one year and a training day for the municipal staff. Farid "
            "Haddad will report monthly spending to the council.",
        ),
        (
            "3. Supplier risk",
            "Halden Sensorik, the only supplier of the conductivity probes, currently quotes "
            "a lead time of 11 weeks. Operations will order the probes for the pilot "
            "immediately and look for a second supplier before the launch.",
        ),
        (
            "4. Customer feedback",
            "Sales summarised the feedback from the trial customers. They like the web "
            "dashboard and the alerts by text message, but they asked for an export of raw "
            "readings in a spreadsheet format and for a simpler way to share a dashboard with "
            "people outside their organisation. Platform will estimate both features for the "
            "next meeting. One customer reported that the mooring shackle was hard to open "
            "with gloves; operations will test an alternative design.",
        ),
        (
            "5. Action items",
            "Operations: order the conductivity probes for the pilot and contact at least two "
            "alternative suppliers. Platform: estimate the raw data export and dashboard "
            "sharing. Finance: set up a cost centre for the pilot. Sales: draft the data plan "
            "pricing proposal.",
        ),
        (
            "6. Next meeting",
            "The next Product Council meeting is on 26 March 2026. Sales will present the "
            "pricing proposal for the data plans.",
        ),
    ),
}


QUESTIONS: tuple[MiniQuestion, ...] = (
    # field_handbook.md
    MiniQuestion(
        "What are the core working hours for field engineers?",
        HANDBOOK_MD,
        ("10:00 to 15:00",),
        "keyword",
    ),
    MiniQuestion(
        "How much can I claim for food on a day I'm working out in the field?",
        HANDBOOK_MD,
        ("38 EUR",),
        "paraphrase",
    ),
    MiniQuestion(
        "What is the weekly stipend for being on call?",
        HANDBOOK_MD,
        ("240 EUR",),
        "specific",
    ),
    # incident_INC-2291.html
    MiniQuestion(
        "How long did the telemetry ingestion outage in INC-2291 last?",
        INCIDENT_HTML,
        ("47 minutes",),
        "specific",
    ),
    MiniQuestion(
        "Why did the buoys stop being able to send their readings in March?",
        INCIDENT_HTML,
        ("certificate", "gw-east-2"),
        "paraphrase",
    ),
    MiniQuestion(
        "Who was the incident commander for INC-2291?",
        INCIDENT_HTML,
        ("Priya Raman",),
        "keyword",
    ),
    # facilities_notice.txt
    MiniQuestion(
        "When will the elevator in Building C be out of order?",
        NOTICE_TXT,
        ("9 April", "07:30"),
        "paraphrase",
    ),
    MiniQuestion(
        "Which phone extension reaches the facilities desk?",
        NOTICE_TXT,
        ("4417",),
        "specific",
    ),
    MiniQuestion(
        "Where is the assembly point for the fire drill?",
        NOTICE_TXT,
        ("flagpole",),
        "keyword",
    ),
    # kx3_datasheet.pdf
    MiniQuestion(
        "What is the battery life of the Kestrel KX-3?",
        DATASHEET_PDF,
        ("19 months",),
        "specific",
    ),
    MiniQuestion(
        "How often do the buoy's optical sensors need to be recalibrated?",
        DATASHEET_PDF,
        ("180 days",),
        "paraphrase",
    ),
    MiniQuestion(
        "Which firmware version adds adaptive sampling?",
        DATASHEET_PDF,
        ("4.2.7",),
        "keyword",
    ),
    # council_minutes.docx
    MiniQuestion(
        "When is the KX-3 now going to be launched commercially?",
        MINUTES_DOCX,
        ("16 September 2026",),
        "specific",
    ),
    MiniQuestion(
        "How much money did the council sign off for the trial with the town's reservoirs?",
        MINUTES_DOCX,
        ("312,000 EUR",),
        "paraphrase",
    ),
    MiniQuestion(
        "How long does the supplier take to deliver the conductivity probes?",
        MINUTES_DOCX,
        ("11 weeks",),
        "paraphrase",
    ),
    # unanswerable: they sound related, but no file answers them
    MiniQuestion(
        "How many days of sick leave do field engineers get per year?",
        None,
        (),
        "unanswerable",
    ),
    MiniQuestion(
        "What is the list price of the older Kestrel KX-2 buoy?",
        None,
        (),
        "unanswerable",
    ),
    MiniQuestion(
        "What caused the ingestion outage in January 2026?",
        None,
        (),
        "unanswerable",
    ),
    MiniQuestion(
        "Who will chair the Product Council meeting in March?",
        None,
        (),
        "unanswerable",
    ),
)


def _write_pdf(path: Path, pages: tuple[tuple[str, ...], ...]) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4, invariant=True)
    c.setTitle("Kestrel KX-3 product data sheet")
    for blocks in pages:
        y = 800.0
        for block in blocks:
            if block.startswith("# "):
                y -= 6
                c.setFont("Helvetica-Bold", 11)
                c.drawString(56, y, block[2:])
                y -= 16
                continue
            c.setFont("Helvetica", 10)
            # No breaks at hyphens, so values such as "KX-3" stay on one line.
            for line in textwrap.wrap(block, width=95, break_on_hyphens=False):
                c.drawString(56, y, line)
                y -= 14
        c.showPage()
    c.save()


def _write_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = MINUTES["title"]
    document.add_heading(MINUTES["title"], level=1)
    document.add_paragraph(MINUTES["meta"])
    for heading, body in MINUTES["sections"]:
        document.add_heading(heading, level=2)
        document.add_paragraph(body)
    document.save(str(path))


def write_mini_corpus(folder: Path) -> list[MiniQuestion]:
    """Write the five documents into ``folder`` (created if missing); return the questions."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / HANDBOOK_MD).write_text(HANDBOOK, encoding="utf-8")
    (folder / INCIDENT_HTML).write_text(INCIDENT, encoding="utf-8")
    (folder / NOTICE_TXT).write_text(NOTICE, encoding="utf-8")
    _write_pdf(folder / DATASHEET_PDF, DATASHEET_PAGES)
    _write_docx(folder / MINUTES_DOCX)
    return list(QUESTIONS)


def write_questions_file(corpus: Path, path: Path) -> list[MiniQuestion]:
    """Write the corpus into ``corpus`` (an existing folder) and its questions to
    ``path`` as JSON lines in the evaluation sets' format; return the questions."""
    questions = write_mini_corpus(corpus)
    with path.open("w", encoding="utf-8") as out:
        for i, q in enumerate(questions):
            row = {
                "id": f"mini{i:02d}",
                "question": q.question,
                "relevant": [q.source_name] if q.source_name else [],
                "answer_contains": list(q.answer_contains),
                "kind": q.kind if q.answer_contains else "unanswerable",
            }
            out.write(json.dumps(row) + "\n")
    return questions
