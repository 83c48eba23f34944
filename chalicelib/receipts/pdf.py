"""Build a receipt PDF from a receipt document (receipts.service.document) with fpdf2.

fpdf2 is imported here, inside build_pdf, and this module only from the code path that
builds PDFs: it pulls in fontTools, which no other request needs (and Pillow where it is
installed; the deployment package leaves it out: receipts draw no images). Text is set in
DejaVu Sans (embedded, subset): fpdf2's built-in fonts are Latin-1 only. The fonts shipped
cover Latin, Greek, Cyrillic, Armenian, Georgian and currency signs (fonts/README.md);
glyphs they lack (CJK, Arabic, Hebrew, Indic) would print as blanks, so fpdf2 is told to
fall back to nothing rather than fail.

No remote asset is ever fetched: the merchant's logo is set as its name, in its colour.
"""
from __future__ import annotations

import warnings
from pathlib import Path

FONT_DIR = Path(__file__).resolve().parent / "fonts"
FONT = "DejaVu"


def _rgb(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    try:
        return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
    except ValueError:
        return 59, 91, 219


def _text_on(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    return (0, 0, 0) if luminance > 160 else (255, 255, 255)


def build_pdf(doc: dict) -> bytes:
    with warnings.catch_warnings():
        # Without Pillow fpdf2 warns that it cannot add images; a receipt draws none, and
        # the deployment package leaves Pillow out (infra/package.sh, OPTIONAL_IMPORTS).
        warnings.filterwarnings("ignore", message="Pillow could not be imported")
        from fpdf import FPDF
        from fpdf.enums import XPos, YPos

    merchant, customer, receipt = doc["merchant"], doc["customer"], doc["receipt"]
    brand = _rgb(merchant["color"])

    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_margins(18, 18, 18)
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_font(FONT, "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font(FONT, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.set_title(f"Receipt {receipt['number']}")
    pdf.set_author(merchant["name"])
    pdf.set_creator("billing-portal")
    pdf.set_lang("en")
    pdf.add_page()
    width = pdf.epw

    def line(text: str, size: float = 10, style: str = "", height: float = 5.5, align: str = "L"):
        pdf.set_font(FONT, style, size)
        pdf.multi_cell(width, height, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    # Merchant band: the logo as text.
    pdf.set_fill_color(*brand)
    pdf.set_text_color(*_text_on(brand))
    pdf.set_font(FONT, "B", 18)
    pdf.cell(width, 16, f"  {merchant['name']}", fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.ln(6)

    line("Receipt", 20, "B", 10)
    pdf.set_text_color(80, 80, 80)
    line(f"Receipt number: {receipt['number']}")
    line(f"Date paid: {receipt['date']} (UTC)")
    line(f"Status: {receipt['status']}")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(4)

    # From / billed to, side by side.
    top = pdf.get_y()
    half = width / 2 - 4
    pdf.set_font(FONT, "B", 10)
    pdf.multi_cell(half, 5.5, "From", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 10)
    pdf.multi_cell(half, 5.5, "\n".join([merchant["name"], *merchant["address_lines"],
                                         merchant["support_email"]]),
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    left_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin + width / 2 + 4, top)
    pdf.set_font(FONT, "B", 10)
    pdf.multi_cell(half, 5.5, "Billed to", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 10)
    billed = [x for x in [customer["name"], customer["email"], *customer["address_lines"]] if x]
    pdf.multi_cell(half, 5.5, "\n".join(billed) or "-", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 6)

    # Line items.
    pdf.set_font(FONT, "", 10)
    pdf.set_draw_color(200, 200, 200)
    pdf.set_fill_color(255, 255, 255)
    with pdf.table(col_widths=(70, 10, 20), text_align=("LEFT", "RIGHT", "RIGHT"),
                   headings_style=_heading_style(brand), line_height=6.5,
                   borders_layout="HORIZONTAL_LINES", cell_fill_color=(246, 248, 250),
                   cell_fill_mode="ROWS", padding=1.5) as table:
        table.row(["Description", "Qty", "Amount"])
        for item in receipt["lines"]:
            table.row([item["description"], str(item["quantity"]), item["amount"]])
    pdf.ln(3)

    def total_row(label: str, value: str, bold: bool = False):
        pdf.set_font(FONT, "B" if bold else "", 11 if bold else 10)
        pdf.cell(width * 0.7, 6.5, label, align="R")
        pdf.cell(width * 0.3, 6.5, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    if receipt["subtotal"]:
        total_row("Subtotal", receipt["subtotal"])
    if receipt["tax"]:
        total_row("Tax", receipt["tax"])
    total_row(f"Total paid ({receipt['currency']})", receipt["total"], bold=True)
    if receipt["refunded"]:
        total_row("Refunded", f"−{receipt['refunded']}")
        total_row("Net paid", receipt["net"], bold=True)
    pdf.ln(4)
    if receipt["paid_with"]:
        line(f"Paid with: {receipt['paid_with']}")
    if receipt["refunds"]:
        pdf.ln(2)
        line("Refunds", 11, "B", 7)
        for refund in receipt["refunds"]:
            line(f"{refund['date']}: {refund['amount']} ({refund['status']})")
    pdf.ln(8)
    pdf.set_text_color(90, 90, 90)
    line(f"Questions about this receipt? Write to {merchant['support_email']}.", 9)
    return bytes(pdf.output())


def _heading_style(brand):
    from fpdf.fonts import FontFace

    return FontFace(emphasis="BOLD", color=_text_on(brand), fill_color=brand)
